"""``edge-seg serve``: a browser view of the device runtime for clinic staff.

The web layer (``app``) only parses requests and renders pages; everything it does goes
through library functions:

- ``store``: the data folder: job ids, job records, fixed file names, retention;
- ``uploads``: streaming a multipart upload into a job's folder under limits (and zip
  members out of it);
- ``worker``: the one background thread that segments a job's scans, through
  ``segment_scan`` (the same per-scan library calls as ``edge-seg run``), and its DICOM
  series, through ``segment_series`` (``edge_runtime.dicom``'s ``process_series``, as
  ``edge-seg run STUDY/``);
- ``security``: loopback or token, sessions, CSRF, security headers;
- ``pages``: the HTML (no template engine, everything escaped) and the plain-words findings.

Importing this package imports nothing heavy; the web stack (the ``serve`` extra: starlette,
uvicorn, python-multipart) is imported by ``app`` only, see ``app.require_web_stack``.
Research software: not a medical device, not for diagnosis.
"""
