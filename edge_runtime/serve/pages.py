"""The HTML of ``edge-seg serve``: plain functions returning strings, every value escaped.

No template engine and no JavaScript build: the pages work without scripts (forms, links,
a refreshing progress page); ``static/app.js`` adds drag and drop, polling, the opacity
slider, the outline toggle and the slice scroller. Nothing is loaded from another site.
"""

import datetime
from html import escape

from edge_runtime import __version__
from edge_runtime.serve.security import CSRF_FIELD

NOTICE_HEAD = "Not a medical device."
NOTICE_BODY = ("Research software, not for diagnosis or treatment decisions; a qualified "
               "reader must review every scan.")
NOTICE = f"{NOTICE_HEAD} {NOTICE_BODY}"
ACCEPT = ".png,.jpg,.jpeg,.bmp,.tif,.tiff,.webp,.dcm,.dicom,.zip,image/*,application/dicom"
STATE_WORDS = {"uploading": "Uploading", "queued": "Waiting", "running": "Segmenting",
               "done": "Done", "interrupted": "Interrupted (the server stopped)"}


def _e(value):
    return escape(str(value), quote=True)


def _num(x, digits=0):
    return f"{x:,.{digits}f}"


def _pct(p):
    return f"{100 * float(p):.0f}\u00a0%"   # no line break between number and unit


def when(ts):
    return datetime.datetime.fromtimestamp(float(ts)).strftime("%d %b %Y, %H:%M")


def layout(title, body, ctx=None, *, nav=True, notice=False, head_extra=""):
    """``ctx``: {"model", "csrf", "auth", "limits"} from the app (None on the sign-in page)."""
    ctx = ctx or {}
    model, logout_csrf = ctx.get("model", ""), ctx.get("csrf") if ctx.get("auth") else None
    links = ""
    if nav:
        logout = ""
        if logout_csrf:
            logout = (f'<form method="post" action="/logout" class="inline">'
                      f'{csrf_input(logout_csrf)}<button type="submit" class="quiet">Sign out'
                      '</button></form>')
        links = f'<nav><a href="/">New scan</a><a href="/results">Past results</a>{logout}</nav>'
    banner = (f'<p class="notice" id="notice" role="note"><strong>{_e(NOTICE_HEAD)}</strong> '
              f'{_e(NOTICE_BODY)}</p>' if notice else "")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)} · edge-seg</title>
<link rel="stylesheet" href="/static/style.css">
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<script src="/static/app.js" defer></script>
{head_extra}
</head>
<body>
<header class="top"><a class="brand" href="/">edge-seg</a><span class="tag">brain MRI tumour outlines</span>{links}</header>
<main>
{banner}
{body}
</main>
<footer>edge-seg {_e(__version__)}{(' · model ' + _e(model)) if model else ''} · {_e(NOTICE)}</footer>
</body>
</html>
"""


def csrf_input(token):
    return f'<input type="hidden" name="{CSRF_FIELD}" value="{_e(token)}">'


def error_line(message):
    return f'<p class="error" role="alert" id="error">{_e(message)}</p>' if message else ""


def upload_form(csrf, limits_text, error=None):
    return f"""
<form class="upload" id="upload-form" method="post" action="/upload" enctype="multipart/form-data">
{csrf_input(csrf)}
<label class="drop" id="drop" for="files">
<span class="drop-title">Drop scans here</span>
<span class="drop-sub">or <span class="linkish">choose files</span> · PNG, JPEG, BMP, TIFF, WebP or DICOM files, a folder, or a .zip of them</span>
<input type="file" id="files" name="files" multiple accept="{ACCEPT}">
<span class="chosen" id="chosen" aria-live="polite"></span>
</label>
<p class="folder"><label for="folder">A DICOM series in a folder:</label>
<input type="file" id="folder" name="files" webkitdirectory multiple></p>
{error_line(error)}
<div class="actions"><button type="submit" id="submit">Segment</button>
<span class="limits">{_e(limits_text)}</span></div>
</form>"""


def upload_page(ctx, recent, error=None):
    recent_html = ""
    if recent:
        recent_html = "<h2>Recent results</h2>" + results_table(recent[:5], csrf=None) + \
            '<p><a href="/results">All past results</a></p>'
    body = f"""<h1>Segment a scan</h1>
<p class="lead">Drop one or more brain MRI slices, or a DICOM series (a folder, a .zip or its
.dcm files). Each slice is outlined by the model; the result shows where it sees tumour, how
large it is, and files to keep. A DICOM series is read in slice order and also gets its
tumour volume and a DICOM Segmentation.</p>
{upload_form(ctx["csrf"], ctx["limits"], error)}
{recent_html}"""
    return layout("New scan", body, ctx)


def login_page(csrf, error=None):
    body = f"""<h1>Sign in</h1>
<p class="lead">This server is reachable from the network; enter the access token printed when
it was first started.</p>
<form class="login" method="post" action="/login">
{csrf_input(csrf)}
<label for="token">Access token</label>
<input type="password" id="token" name="token" autocomplete="current-password" required autofocus>
{error_line(error)}
<div class="actions"><button type="submit">Sign in</button></div>
</form>"""
    return layout("Sign in", body, None, nav=False)


def message_page(ctx, title, message):
    body = f"<h1>{_e(title)}</h1>{error_line(message)}<p><a href=\"/\">Back to the start</a></p>"
    return layout(title, body, ctx)


# -- findings in words ---------------------------------------------------------------------

def findings_in_words(f):
    """Findings JSON -> (headline, [(label, text)]) in plain words for the result page."""
    rows = []
    spacing = f.get("spacing_mm")
    found = bool(f.get("tumour_found"))
    headline = "Tumour found" if found else "No tumour found"
    if found:
        if f.get("area_mm2") is not None:
            area = f"{_num(f['area_mm2'], 1)} mm² ({_num(f['area_px'])} pixels)"
        else:
            area = (f"{_num(f['area_px'])} pixels, {100 * f['area_fraction']:.2f} % of the image "
                    "(no mm²: the file has no pixel spacing)")
        rows.append(("Area", area))
        box = f.get("bbox")
        if box:
            x0, y0 = box["x"], box["y"]
            text = (f"x {x0}–{x0 + box['width'] - 1}, y {y0}–{y0 + box['height'] - 1} "
                    f"({box['width']} × {box['height']} pixels")
            if spacing:
                text += (f"; {box['width'] * spacing[1]:.1f} × {box['height'] * spacing[0]:.1f}"
                         " mm")
            rows.append(("Bounding box", text + ")"))
        n = f.get("components") or 0
        rows.append(("Regions", f"{n} separate region{'s' if n != 1 else ''}"))
        if f.get("mean_probability") is not None:
            rows.append(("Confidence", f"{_pct(f['mean_probability'])} mean model probability "
                                       f"inside the outline (highest "
                                       f"{_pct(f['max_probability'])})"))
    else:
        if f.get("max_probability") is not None:
            rows.append(("Confidence", f"{_pct(f['max_probability'])} highest tumour "
                                       f"probability anywhere (an outline starts at "
                                       f"{_pct(f['threshold'])} and needs a peak of "
                                       f"{_pct(f.get('min_peak_probability') or 0)})"))
    inp = f.get("input") or {}
    scan = f"{inp.get('width')} × {inp.get('height')} pixels, {inp.get('format') or '?'}"
    scan += f" ({inp['mode']})" if inp.get("mode") else ""
    rows.append(("Scan", scan))
    rows.append(("Pixel spacing", f"{spacing[0]:.3g} × {spacing[1]:.3g} mm" if spacing
                 else "unknown (only DICOM files carry it)"))
    bundle = f.get("bundle") or {}
    rows.append(("Model", f"{bundle.get('name', '?')}, threshold {f.get('threshold')}"))
    return headline, rows


# -- job and results pages -----------------------------------------------------------------

def progress_section(job_id, job):
    total, done = job.get("total", 0), job.get("done", 0)
    state = STATE_WORDS.get(job["state"], job["state"])
    text = f"{state}: scan {min(done + 1, total)} of {total}" if job["state"] == "running" \
        else f"{state}…"
    return f"""<section class="progress" id="progress" data-status="/jobs/{_e(job_id)}/status">
<h1>Working on {total} scan{'s' if total != 1 else ''}</h1>
<progress id="bar" max="{max(total, 1)}" value="{done}"></progress>
<p id="progress-text" aria-live="polite">{_e(text)}</p>
<p class="hint">This page updates by itself as each scan is done; you may leave it and find the
result later under Past results.</p>
</section>"""


def _scan_section(base, label, findings, current, download_stem, position=""):
    """One image of the viewer: the stacked layers, the findings in words, the downloads.
    ``base``: the URL its files hang under; ``label``: what it is (file name, slice);
    ``position``: what the scroller says on it ("Slice 3 of 7"; default "<unit> k of n")."""
    headline, rows = findings_in_words(findings)
    found = "found" if findings.get("tumour_found") else "clear"
    lazy = "" if current else ' loading="lazy"'    # a long series loads as it is scrolled
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(text)}</dd>" for k, text in rows)
    d = _e(download_stem)
    pos = f' data-position="{_e(position)}"' if position else ""
    return f"""<section class="scan{' current' if current else ''}" aria-label="{_e(label)}"{pos}>
<div class="viewer">
<div class="stack"><img class="base" src="{base}/view.png" alt="{_e(label)}: the scan"{lazy}>
<img class="layer" src="{base}/layer.png" alt="tumour outline"{lazy}></div>
</div>
<div class="findings {found}">
<p class="file">{_e(label)}</p>
<h2 class="headline">{_e(headline)}</h2>
<dl>{dl}</dl>
<div class="downloads"><span>Download:</span>
<a href="{base}/mask.png" download="{d}_mask.png">Mask PNG</a>
<a href="{base}/overlay.png" download="{d}_overlay.png">Overlay PNG</a>
<a href="{base}/findings.json" download="{d}_findings.json">Findings JSON</a>
</div>
</div>
</section>"""


def _stem(name):
    stem = name.rsplit(".", 1)[0] if "." in name[1:] else name
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in stem)[:80] or "scan"


def _scroller(count, unit, key=None, first=None):
    """The slider over a group's images (needs app.js). ``key`` None: the scans' scroller,
    with the ids it has always had; else ids suffixed with ``key``. ``first``: the label
    of the first image (default "<unit> 1 of <count>")."""
    sfx = "" if key is None else f"-{key}"
    first = first or f"{unit} 1 of {count}"
    return f"""<div class="controls scroller" id="scroller{sfx}" data-unit="{_e(unit)}">
<button type="button" class="prev" id="prev{sfx}" aria-label="previous {unit.lower()}">‹</button>
<input type="range" class="slice" id="slice{sfx}" min="1" max="{count}" value="1" aria-label="{unit.lower()}">
<button type="button" class="next" id="next{sfx}" aria-label="next {unit.lower()}">›</button>
<span class="slice-label" id="slice-label{sfx}">{_e(first)}</span></div>"""


def _ranges(numbers):
    """[2, 3, 4, 7] -> "2–4, 7"."""
    out, run = [], []
    for n in numbers:
        if run and n == run[-1] + 1:
            run.append(n)
            continue
        if run:
            out.append(f"{run[0]}–{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [n]
    if run:
        out.append(f"{run[0]}–{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)


def series_in_words(record):
    """A series record of ``job.json`` -> (headline, [(key, label, text)]) for its card."""
    r = record.get("result") or {}
    n = record["slices"]
    with_tumour = r.get("slices_with_tumour") or []
    if not with_tumour:
        return f"No tumour found in {n} slice{'s' if n != 1 else ''}", []
    rows = [("slices", "Tumour on", f"{len(with_tumour)} of {n} slices "
                                    f"(slice{'s' if len(with_tumour) > 1 else ''} "
                                    f"{_ranges(with_tumour)})")]
    sp = r.get("spacing") or {}
    if r.get("volume_ml") is not None:
        rows.append(("volume", "Volume", f"{r['volume_ml']:.2f} mL (slice spacing "
                                         f"{sp['spacing_mm']:.2f} mm from {sp['method']})"))
    else:
        rows.append(("volume", "Volume", f"not given: {r.get('volume_refused')}"))
    if r.get("largest_cross_section_mm2") is not None:
        rows.append(("cross-section", "Largest cross-section",
                     f"{_num(r['largest_cross_section_mm2'], 1)} mm² "
                     f"(slice {r['largest_cross_section_slice']})"))
        rows.append(("diameter", "Longest diameter",
                     f"{_num(r['longest_diameter_mm'], 1)} mm in-plane "
                     f"(slice {r['longest_diameter_slice']})"))
    else:
        rows.append(("cross-section", "Size", "no sizes in mm (the files have no pixel "
                                              "spacing)"))
    return f"Tumour found on {len(with_tumour)} of {n} slices", rows


def _series_section(job_id, k, record, findings):
    """One DICOM series: its card (sizes, downloads, montage) and its slice scroller."""
    base = f"/jobs/{job_id}/series/{k}"
    title = " · ".join(x for x in (f"Series {record['series_number']}"
                                   if record.get("series_number") is not None else "Series",
                                   record.get("description") or "") if x)
    r = record.get("result") or {}
    stem = _e(record.get("stem") or f"series_{k}")
    n = record["slices"]
    order = f", {r['ordering_short']}" if r.get("ordering_short") else ""
    meta = (f'<p class="file">{_e(title)} · {n} slice{"s" if n != 1 else ""}{_e(order)}</p>'
            f'<p class="uid">{_e(record.get("series_uid") or "")}</p>')
    lines = [f"could not be read: {x}" for x in r.get("failed_slices") or []]
    lines += [f"note: {x}" for x in record.get("notes") or []]
    if r.get("seg_refused"):
        lines.append(f"no DICOM SEG: {r['seg_refused']}")
    notes = ('<ul class="series-notes">' + "".join(f"<li>{_e(x)}</li>" for x in lines) +
             "</ul>") if lines else ""
    if record.get("state") != "ok":
        card = (f'<div class="findings series-card failed">{meta}<h2 class="headline">'
                f'Series not segmented</h2><p class="error" role="alert">'
                f'{_e(record.get("error") or "failed")}</p>'
                f'{notes}</div>')
        return (f'<section class="series" id="series-{k}" aria-label="{_e(title)}">'
                f'<div class="series-head">{card}</div></section>')
    headline, rows = series_in_words(record)
    found = "found" if r.get("slices_with_tumour") else "clear"
    dl = "".join(f'<dt>{_e(label)}</dt><dd data-key="{key}">{_e(text)}</dd>'
                 for key, label, text in rows)
    files = r.get("files") or []
    links = []
    if "seg" in files:
        links.append(f'<a href="{base}/seg.dcm" download="{stem}_seg.dcm">DICOM SEG</a>')
    links.append(f'<a href="{base}/series.json" download="{stem}_series.json">Series JSON</a>')
    if "montage" in files:
        links.append(f'<a href="{base}/montage.png" download="{stem}_montage.png">'
                     'Montage PNG</a>')
    card = (f'<div class="findings series-card {found}">{meta}<h2 class="headline">'
            f'{_e(headline)}</h2><dl>{dl}</dl>{notes}<div class="downloads">'
            f'<span>Download the series:</span>{"".join(links)}</div></div>')
    montage = ""
    if "montage" in files:
        montage = (f'<figure class="montage"><img src="{base}/montage.png" alt="{_e(title)}: '
                   f'the slices with tumour" loading="lazy"><figcaption>The slices with tumour, '
                   f'in order (slice number and area)</figcaption></figure>')
    shown = [m for m in record.get("shown") or [] if (k, m) in findings]
    names = record.get("slice_names") or []
    viewer = ""
    if shown:
        sections = "".join(
            _scan_section(f"{base}/slices/{m}",
                          f"Slice {m} of {n} · {names[m - 1] if m <= len(names) else ''}",
                          findings[(k, m)], i == 0, f"{record.get('stem')}_s{m:03d}",
                          position=f"Slice {m} of {n}")
            for i, m in enumerate(shown))
        scroller = (_scroller(len(shown), "Slice", k, f"Slice {shown[0]} of {n}")
                    if len(shown) > 1 else "")
        viewer = f'<div class="group">{scroller}{sections}</div>'
    return (f'<section class="series" id="series-{k}" aria-label="{_e(title)}">'
            f'<div class="series-head">{card}{montage}</div>{viewer}</section>')


def job_page(ctx, job_id, job, findings_by_index, slice_findings=None):
    """The page of one job: progress while it runs, then every series' and scan's result,
    what was left out and the errors. ``slice_findings``: {(series, slice number): findings}."""
    if job["state"] not in ("done", "interrupted"):
        head = '<noscript><meta http-equiv="refresh" content="2"></noscript>'
        return layout("Working", progress_section(job_id, job), ctx, notice=True,
                      head_extra=head)
    slice_findings = slice_findings or {}
    scans = job["scans"]
    series = job.get("series") or []
    ok = [i for i, s in enumerate(scans) if s.get("state") == "ok" and i in findings_by_index]
    failed = [s for s in scans if s.get("state") == "failed"]
    skipped = job.get("skipped") or []
    n_series = f" · {len(series)} DICOM series" if series else ""
    parts = [f'<p class="meta">Uploaded {_e(when(job["created"]))} · {len(scans)} '
             f'file{"s" if len(scans) != 1 else ""}{n_series}'
             f'{", " + str(len(failed)) + " could not be read" if failed else ""}</p>']
    if job["state"] == "interrupted":
        parts.append(error_line("The server stopped before this job finished; "
                                "upload the scans again."))
    if failed:
        parts.append('<ul class="errors" id="errors">' + "".join(
            f'<li class="error" role="alert">{_e(s.get("error") or s["name"])}</li>'
            for s in failed) + "</ul>")
    if skipped:
        parts.append('<div class="skipped" id="skipped"><p>Left out (not segmented):</p><ul>' +
                     "".join(f"<li>{_e(line)}</li>" for line in skipped) + "</ul></div>")
    viewable = ok or any(r.get("shown") for r in series)
    if viewable:
        parts.append("""<div class="controls">
<label class="opacity">Outline opacity <input type="range" id="opacity" min="0" max="100" value="100"> <output id="opacity-value">100 %</output></label>
<label class="toggle"><input type="checkbox" id="show-mask" checked> Show tumour outline</label>
</div>""")
    parts.extend(_series_section(job_id, k, r, slice_findings) for k, r in enumerate(series))
    if ok:
        heading = "<h2 class=\"group-title\">Scans</h2>" if series else ""
        parts.append(f'<div class="group">{heading}'
                     f'{_scroller(len(ok), "Scan") if len(ok) > 1 else ""}' +
                     "".join(_scan_section(f"/jobs/{job_id}/scans/{i}", scans[i]["name"],
                                           findings_by_index[i], n == 0,
                                           _stem(scans[i]["name"]))
                             for n, i in enumerate(ok)) + "</div>")
    if not ok and not any(r.get("state") == "ok" for r in series):
        parts.append("<h2>Nothing to show</h2><p>No file of this upload could be segmented. "
                     "Try another file:</p>" + upload_form(ctx["csrf"], ctx["limits"]))
    if series:
        title = f"Results ({len(series)} series" + (f", {len(ok)} scans)" if ok else ")")
    else:
        title = "Result" if len(ok) <= 1 else f"Results ({len(ok)} scans)"
    return layout(title, f'<h1 class="sr">{_e(title)}</h1>' + "\n".join(parts), ctx,
                  notice=True)


def job_summary(job):
    scans = job.get("scans", [])
    ok = [s for s in scans if s.get("state") == "ok"]
    failed = sum(1 for s in scans if s.get("state") == "failed")
    found = sum(1 for s in ok if (s.get("summary") or {}).get("tumour_found"))
    series = [r for r in job.get("series") or [] if r.get("state") == "ok"]
    failed += sum(1 for r in job.get("series") or [] if r.get("state") == "failed")
    if job["state"] not in ("done",):
        return STATE_WORDS.get(job["state"], job["state"])
    texts = []
    for r in series:
        res = r.get("result") or {}
        name = f"series {r['series_number']}" if r.get("series_number") is not None \
            else "series"
        if not res.get("slices_with_tumour"):
            texts.append(f"{name}: no tumour found")
        elif res.get("volume_ml") is not None:
            texts.append(f"{name}: tumour, {res['volume_ml']:.2f} mL")
        else:
            texts.append(f"{name}: tumour (no volume)")
    if len(ok) == 1:
        texts.append("tumour found" if found else "no tumour found")
    elif ok:
        texts.append(f"tumour found in {found} of {len(ok)} scans")
    text = "; ".join(texts) or "could not be read"
    return text + (f", {failed} failed" if failed else "")


def results_table(jobs, csrf):
    rows = []
    for job in jobs:
        names = [s["name"] for s in job.get("scans", [])]
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        delete = ""
        if csrf is not None and job["state"] in ("done", "interrupted"):
            delete = (f'<form method="post" action="/jobs/{_e(job["id"])}/delete" class="inline">'
                      f'{csrf_input(csrf)}<button type="submit" class="quiet">Delete</button>'
                      "</form>")
        rows.append(f'<tr><td>{_e(when(job["created"]))}</td><td>{_e(shown or "—")}</td>'
                    f'<td>{_e(job_summary(job))}</td>'
                    f'<td><a href="/jobs/{_e(job["id"])}">Open</a></td><td>{delete}</td></tr>')
    return ('<table class="results"><thead><tr><th>Uploaded</th><th>Files</th><th>Result</th>'
            '<th></th><th></th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>")


def results_page(ctx, jobs, keep_days):
    keep = (f"Results are kept for {keep_days:g} days, then deleted." if keep_days
            else "Results are kept until deleted.")
    table = results_table(jobs, ctx["csrf"]) if jobs else "<p>No results yet.</p>"
    return layout("Past results", f"<h1>Past results</h1><p class=\"lead\">{_e(keep)}</p>{table}",
                  ctx, notice=True)
