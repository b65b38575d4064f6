"""The lab's archive: one-question experiments on the models, kept runnable as a record.

Each script answered one question (does output-level slice context help, does an ensemble,
where do the misses come from, do the validation scans leak, ...); the answers are in
docs/RESULTS.md and runs/*.md. Nothing in edge_runtime, edge_seg.train or edge_seg.convert
imports them. Their tests carry the `lab` marker: `python -m pytest --lab -m lab`.
"""
