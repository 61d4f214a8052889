"""The leaderboard as one self-contained HTML page: ``results/index.html``.

The page is the Markdown leaderboard (``LEADERBOARD.md``: scores, the success matrix, one table per
problem, the landscape section, the failures, and the head-to-head section when asked for),
converted by the small converter below, with:

* a provenance table at the top (library versions, device, commit, suite, step budgets and seeds
  per problem, when the cells were written and when the page was);
* every figure embedded as a base64 data URI: each file a line or a table names (`plots/x.png`,
  ``![alt](escape/x.png)``) where it is first named, each problem's convergence plot under its
  table, and every other figure the report wrote in a last "Figures" section;
* every table sortable by clicking a header (a twenty-line inline script: numbers compare as
  numbers, "–" and text after them, "∞" after every finite number).

No CDN, no network, no server: the page opens from disk (``file://``) as it is. The converter
knows the Markdown this project writes (ATX headings, pipe tables with an alignment row,
paragraphs, ``-`` lists, fenced code, inline code, bold, italics, links, images), not all of
CommonMark; no Markdown package is a dependency.
"""

from __future__ import annotations

import base64
import datetime
import html
import pathlib
import re
import sys

import pandas as pd

from bench import schema as S

MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1400px;
       padding: 0 1.5em; color: #222; }
h1, h2, h3, h4 { line-height: 1.2; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
.scroll { overflow-x: auto; margin: .8em 0; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #d4d4d4; padding: .25em .55em; white-space: nowrap; }
th { background: #f2f2f2; position: sticky; top: 0; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[aria-sort=ascending]::after { content: " \\25B2"; }
table.sortable th[aria-sort=descending]::after { content: " \\25BC"; }
tbody tr:nth-child(even) { background: #fafafa; }
td.r, th.r { text-align: right; } td.c, th.c { text-align: center; }
code { background: #f3f3f3; padding: 0 .2em; border-radius: 3px; font-size: 90%; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 12px; color: #555; }
.missing { color: #a00; }
"""

# Click a header: sort the body's rows by that column; again: the other way.
SCRIPT = """
(function () {
  function key(cell) {
    var t = cell.textContent.trim();
    if (t.charAt(0) === '\\u221e') return [1, Infinity];
    var m = t.replace('\\u2212', '-').match(/^[-+]?(\\d+\\.?\\d*|\\.\\d+)(e[-+]?\\d+)?/i);
    return m ? [1, parseFloat(m[0])] : [t === '\\u2013' || t === '' ? 3 : 2, t.toLowerCase()];
  }
  function cmp(a, b) {
    if (a[0] !== b[0]) return a[0] - b[0];
    return a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0;
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.addEventListener('click', function () {
        var desc = th.getAttribute('aria-sort') === 'ascending';
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', desc ? 'descending' : 'ascending');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows).map(function (r, i) { return [key(r.cells[col]), i, r]; });
        rows.sort(function (a, b) { var c = cmp(a[0], b[0]); return (desc ? -c : c) || a[1] - b[1]; });
        rows.forEach(function (r) { body.appendChild(r[2]); });
      });
    });
  });
})();
"""

_FIG_REF = re.compile(r"`([^`\s]+\.(?:png|svg|jpe?g))`")
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])")
_HEADING = re.compile(r"^(#{1,6}) (.*)$")
_SEPARATOR = re.compile(r"^\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


class _Page:
    """Converts the report's Markdown; remembers which figures it embedded."""

    def __init__(self, root: pathlib.Path, section_figures: dict[str, pathlib.Path]):
        self.root = root
        self.section_figures = section_figures  # heading text -> figure embedded at the end of its section
        self.embedded: set[pathlib.Path] = set()
        self.ids: set[str] = set()

    # --- figures ---------------------------------------------------------------------------
    def _resolve(self, ref: str) -> pathlib.Path | None:
        path = (self.root / ref).resolve()
        return path if path.suffix.lower() in MIME and path.is_file() else None

    def data_uri(self, path: pathlib.Path) -> str:
        return f"data:{MIME[path.suffix.lower()]};base64," + base64.b64encode(path.read_bytes()).decode("ascii")

    def _fig_id(self, path: pathlib.Path) -> str:
        try:
            rel = path.relative_to(self.root.resolve()).as_posix()
        except ValueError:
            rel = path.name
        return "fig-" + _slug(rel)

    def figure(self, path: pathlib.Path, caption: str | None = None) -> str:
        """The figure embedded (once; later calls give nothing)."""
        path = path.resolve()
        if path in self.embedded:
            return ""
        self.embedded.add(path)
        try:
            rel = path.relative_to(self.root.resolve()).as_posix()
        except ValueError:
            rel = path.name
        cap = html.escape(caption if caption is not None else rel)
        return (f'<figure id="{self._fig_id(path)}"><img src="{self.data_uri(path)}" alt="{cap}">'
                f"<figcaption>{cap}</figcaption></figure>")

    def referenced(self, text: str) -> list[pathlib.Path]:
        """Figure files a line names in backquotes, that exist under the results directory."""
        return [p for p in (self._resolve(m.group(1)) for m in _FIG_REF.finditer(text)) if p is not None]

    # --- inline ------------------------------------------------------------------------------
    def _image(self, m: re.Match) -> str:
        alt, ref = html.unescape(m.group(1)), html.unescape(m.group(2))
        path = self._resolve(ref)
        if path is None:
            return f'<span class="missing">[figure not found: {html.escape(ref)}]</span>'
        if path in self.embedded:  # shown once: link to it
            return f'<a href="#{self._fig_id(path)}">{html.escape(alt)}</a>'
        self.embedded.add(path)
        return f'<img id="{self._fig_id(path)}" src="{self.data_uri(path)}" alt="{html.escape(alt)}">'

    def inline(self, text: str) -> str:
        parts = re.split(r"(`[^`]+`)", text)
        out = []
        for i, part in enumerate(parts):
            if i % 2:  # a code span
                code = part[1:-1]
                path = self._resolve(code) if _FIG_REF.fullmatch(part) else None
                tag = f"<code>{html.escape(code)}</code>"
                out.append(f'<a href="#{self._fig_id(path)}">{tag}</a>' if path is not None else tag)
                continue
            s = html.escape(part, quote=False)
            s = _IMAGE.sub(self._image, s)
            s = _LINK.sub(lambda m: f'<a href="{m.group(2).replace(chr(34), "&quot;")}">{m.group(1)}</a>', s)
            s = _BOLD.sub(r"<strong>\1</strong>", s)
            s = _ITALIC.sub(r"<em>\1</em>", s)
            out.append(s)
        return "".join(out)

    # --- blocks ------------------------------------------------------------------------------
    def _heading(self, level: int, text: str) -> str:
        base = _slug(text)
        hid, k = base, 1
        while hid in self.ids:
            k += 1
            hid = f"{base}-{k}"
        self.ids.add(hid)
        return f'<h{level} id="{hid}">{self.inline(text)}</h{level}>'

    @staticmethod
    def _cells(line: str) -> list[str]:
        s = line.strip()
        s = s[1:] if s.startswith("|") else s
        s = s[:-1] if s.endswith("|") else s
        return [c.strip() for c in s.split("|")]

    def table(self, rows: list[str]) -> str:
        head = self._cells(rows[0])
        aligns = []
        for c in self._cells(rows[1]):
            aligns.append(' class="c"' if c.startswith(":") and c.endswith(":")
                          else ' class="r"' if c.endswith(":") else "")
        aligns += [""] * (len(head) - len(aligns))
        body = [self._cells(r) for r in rows[2:]]
        out = ['<div class="scroll"><table class="sortable"><thead><tr>'
               + "".join(f"<th{aligns[j]}>{self.inline(c)}</th>" for j, c in enumerate(head)) + "</tr></thead><tbody>"]
        for r in body:
            r = r + [""] * (len(head) - len(r))
            out.append("<tr>" + "".join(f"<td{aligns[j] if j < len(aligns) else ''}>{self.inline(c)}</td>"
                                        for j, c in enumerate(r)) + "</tr>")
        out.append("</tbody></table></div>")
        return "\n".join(out)

    def convert(self, md: str) -> str:
        lines = md.splitlines()
        out: list[str] = []
        para: list[str] = []
        pending: list[pathlib.Path] = []  # figures named by the current block, embedded after it
        section_fig: list[pathlib.Path] = []  # the current section's own figure (a problem's plot)

        def flush_para():
            if para:
                out.append("<p>" + self.inline(" ".join(para)) + "</p>")
                para.clear()
            flush_figs()

        def flush_figs():
            out.extend(f for f in (self.figure(p) for p in pending) if f)
            pending.clear()

        def end_section():
            flush_para()
            out.extend(f for f in (self.figure(p) for p in section_fig) if f)
            section_fig.clear()

        i = 0
        while i < len(lines):
            line = lines[i]
            m = _HEADING.match(line)
            if m:
                end_section()
                out.append(self._heading(len(m.group(1)), m.group(2).strip()))
                fig = self.section_figures.get(m.group(2).strip())
                if fig is not None:
                    section_fig.append(fig)
                i += 1
            elif line.strip().startswith("|") and i + 1 < len(lines) and _SEPARATOR.match(lines[i + 1].strip()):
                flush_para()
                j = i + 2
                while j < len(lines) and lines[j].strip().startswith("|"):
                    j += 1
                block = lines[i:j]
                out.append(self.table(block))
                pending.extend(p for ln in block for p in self.referenced(ln))
                flush_figs()
                i = j
            elif line.startswith("```"):
                flush_para()
                j = i + 1
                while j < len(lines) and not lines[j].startswith("```"):
                    j += 1
                out.append("<pre><code>" + html.escape("\n".join(lines[i + 1:j])) + "</code></pre>")
                i = j + 1
            elif re.match(r"^\s*[-*] ", line):
                flush_para()
                items = []
                while i < len(lines) and re.match(r"^\s*[-*] ", lines[i]):
                    items.append(re.sub(r"^\s*[-*] ", "", lines[i]))
                    pending.extend(self.referenced(lines[i]))
                    i += 1
                out.append("<ul>" + "".join(f"<li>{self.inline(t)}</li>" for t in items) + "</ul>")
                flush_figs()
            elif not line.strip():
                flush_para()
                i += 1
            else:
                para.append(line.strip())
                pending.extend(self.referenced(line))
                i += 1
        end_section()
        return "\n".join(out)


def provenance(df: pd.DataFrame, suite: str | None = None) -> list[tuple[str, str]]:
    """(what, value) pairs: versions, device, commit, suite, cells, dates, per-problem budgets."""
    def vals(col: str) -> str:
        if col not in df:
            return "unknown"
        v = sorted({str(x) for x in pd.unique(df[col].dropna())})  # distinct first: the frame is every row
        return ", ".join(v) if v else "unknown"

    devices = "unknown"
    if "device" in df and df["device"].notna().all():
        devices = vals("device")
    elif "device_kind" in df:
        dev = df[["backend", "device_kind", "device_count"]].drop_duplicates().astype(str).drop_duplicates()
        devices = "; ".join(f"{r.backend} ({r.device_kind} x{r.device_count})" for r in dev.itertuples())
    commits = sorted({str(x) for x in pd.unique(df["git_commit"].dropna())}) if "git_commit" in df else []
    out = [
        ("suite", suite or "all stored cells"),
        ("device", devices),
        ("jax / jaxlib / optax / flax", " / ".join(vals(c) for c in ("jax_version", "jaxlib_version",
                                                                      "optax_version", "flax_version"))),
        ("python", sys.version.split()[0]),
        ("commit", ", ".join(c[:12] for c in commits) or "unknown"),
        ("cells", str(df["cell_key"].nunique()) if "cell_key" in df else "unknown"),
        ("cells written", (f"{df['utc_time'].min()} to {df['utc_time'].max()}" if "utc_time" in df else "unknown")),
        ("page written", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")),
    ]
    return out


def budgets(df: pd.DataFrame) -> pd.DataFrame:
    """Per problem: step budget, log interval, seeds (tuning + held-out) and hyperparameter points per cell."""
    cols = [c for c in (S.PROBLEM, S.STEPS, S.OPTIMIZER, S.SEED, S.HP_INDEX, S.TUNING, S.LOG_EVERY) if c in df]
    last = df.loc[df[S.STEP].to_numpy() == df[S.STEPS].to_numpy(), cols]  # the columns read below
    rows = []
    for (problem, steps), g in last.groupby([S.PROBLEM, S.STEPS], sort=True, observed=True):
        seeds = g.groupby(S.OPTIMIZER, observed=True)[S.SEED].nunique().max()
        tuning = (g.loc[g[S.TUNING].astype(bool), [S.OPTIMIZER, S.SEED]].drop_duplicates()
                  .groupby(S.OPTIMIZER)[S.SEED].nunique().max()) if S.TUNING in g else float("nan")
        points = g.groupby(S.OPTIMIZER, observed=True)[S.HP_INDEX].nunique()
        rows.append({"problem": str(problem), "steps": int(steps),
                     "log every": int(g[S.LOG_EVERY].iloc[0]) if S.LOG_EVERY in g else "?",
                     "seeds (tuning + held-out)": (f"{int(seeds)} ({int(tuning)} + {int(seeds - tuning)})"
                                                   if tuning == tuning else f"{int(seeds)}"),
                     "points per optimizer": f"{points.min()}" if points.min() == points.max()
                     else f"{points.min()}-{points.max()}",
                     "optimizers": int(g[S.OPTIMIZER].nunique())})
    return pd.DataFrame(rows)


def _markdown_table(frame: pd.DataFrame) -> list[str]:
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |",
             "|" + "".join("---:|" if pd.api.types.is_numeric_dtype(frame[c]) else "---|" for c in frame.columns)]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in frame.itertuples(index=False)]
    return lines


def render(md: str, root: str | pathlib.Path, df: pd.DataFrame | None = None, suite: str | None = None,
           figures: list[pathlib.Path] | None = None, problem_figures: dict[str, pathlib.Path] | None = None) -> str:
    """The page's HTML: ``md`` (the leaderboard's Markdown) converted, the provenance of ``df`` (the
    logged frame) after the title, ``problem_figures`` (problem -> its plot) under each problem's
    section and the rest of ``figures`` at the end."""
    root = pathlib.Path(root)
    page = _Page(root, problem_figures or {})
    head = md.partition("\n")[0]
    if df is not None and not df.empty:  # after the introduction, before the first section
        prov = "\n".join(f"| {k} | {v} |" for k, v in provenance(df, suite))
        at = md.find("\n## ")
        at = len(md) if at < 0 else at + 1
        md = "\n".join([md[:at], "## Provenance", "", "| what | value |", "|---|---|", prov, "",
                        "Step budgets and seeds per problem:", "", *_markdown_table(budgets(df)), "", md[at:]])
    body = page.convert(md)
    tail = [p for p in (figures or []) if pathlib.Path(p).resolve() not in page.embedded
            and pathlib.Path(p).suffix.lower() in MIME and pathlib.Path(p).is_file()]
    if tail:
        body += "\n" + page._heading(2, "Figures") + "\n" + "\n".join(page.figure(pathlib.Path(p)) for p in tail)
    title = html.escape(head.lstrip("# ").strip() or "Leaderboard")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>saddlebench: {title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n"
            f"<script>{SCRIPT}</script>\n</body>\n</html>\n")


def write(md_path: str | pathlib.Path, df: pd.DataFrame | None = None, suite: str | None = None,
          figures: list[pathlib.Path] | None = None, out: str | pathlib.Path | None = None) -> pathlib.Path:
    """Write ``index.html`` beside ``LEADERBOARD.md`` (``md_path``) from its text (``render``); each
    problem's convergence plot (``plots/<problem>.png``, ``reports.plots``) goes under its table."""
    from bench.reports.plots import _slug as plot_slug

    md_path = pathlib.Path(md_path)
    root = md_path.parent
    problem_figures = {}
    written = {pathlib.Path(f).resolve() for f in figures or []}
    if df is not None and not df.empty:
        for p in sorted(set(df[S.PROBLEM].drop_duplicates().astype(str))):
            f = (root / "plots" / f"{plot_slug(p)}.png").resolve()
            if f in written:
                problem_figures[p] = f
    out = pathlib.Path(out) if out is not None else root / "index.html"
    out.write_text(render(md_path.read_text(), root, df, suite, figures, problem_figures), encoding="utf-8")
    return out
