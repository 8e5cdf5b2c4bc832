"""Writing a scorecard as a static site: it opens from disk and can be hosted as is.

::

    index.html                the leaderboard: model x task, speed, fingerprints, the chart
    tasks/<task>.html         one task: model x variant, pass@k, every sample
    pairs/<a>__<b>.html       two models on the trials they share, McNemar's p
    trials/page-<n>.html      every trial, PAGE_SIZE to a page
    trials/<trial_id>.html    one trial: transcript, tool calls, files, execs, checks, screenshots
    artifacts/<trial_id>/     screenshots, copied when the site is not the run's own folder

Everything a model, a verifier or a sandbox produced is untrusted text:
templates autoescape it, no page runs a script (the Content-Security-Policy
forbids them), nothing it wrote becomes a link, and long text is clipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from markupsafe import Markup

from agenteval.report.chart import speed_chart
from agenteval.report.data import ALL_TASKS, Scorecard, TrialRow, load_scorecard, slug
from agenteval.errors import ReportError
from agenteval.store import Store

TEMPLATES = Path(__file__).parent / "templates"
PAGE_SIZE = 200
CHUNK = 500  # trials read from the store at a time
PARALLEL_FROM = 1500  # trials from which worker processes pay for their start
MAX_TEXT = 40_000  # characters of one message or output shown on a trial page
MAX_LIST = 500  # rows of a list on one page (discordant pairs, samples of a cell)
_ARTIFACT = re.compile(r"^artifacts/[A-Za-z0-9_-]+/[A-Za-z0-9][A-Za-z0-9._-]*$")


def environment() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(seconds=_seconds, pct=_pct, num=_num, clip=clip, pretty=pretty_arguments)
    env.globals.update(safe_artifact=lambda p: bool(_ARTIFACT.match(str(p))), MAX_TEXT=MAX_TEXT, MAX_LIST=MAX_LIST)
    return env


def _seconds(v: float | None) -> str:
    return Markup("-" if v is None else (f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"))


def _pct(v: float | None) -> str:
    return Markup("-" if v is None else f"{100 * v:.0f}%")


def _num(v: float | None, fmt: str = "%.1f") -> str:
    # numbers hold no markup: returned as Markup so autoescape skips them (a page has hundreds)
    return Markup("-" if v is None else fmt % v)


def clip(text: Any, limit: int = MAX_TEXT) -> str:
    """At most ``limit`` characters, saying how many were left out."""
    s = "" if text is None else str(text)
    if len(s) <= limit:
        return s
    return s[:limit] + f"\n[... {len(s) - limit:,} more characters not shown]"


def pretty_arguments(arguments: Any) -> str:
    """Tool-call arguments one per line, text values as written (a file's content stays readable)."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return str(arguments)
    if not isinstance(arguments, dict):
        return json.dumps(arguments, ensure_ascii=False)
    lines = []
    for key, value in arguments.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        lines.append(f"{key}:\n{text}" if "\n" in text else f"{key}: {text}")
    return "\n".join(lines)


_ROLES = {"system", "user", "assistant", "tool"}


def messages(transcript: list[Any]) -> list[dict[str, Any]]:
    """Transcript entries with every key the trial page reads, tool calls as (name, arguments)."""
    out = []
    for m in transcript:
        if not isinstance(m, dict):
            m = {"role": "?", "content": m}
        role = str(m.get("role") or "?")
        calls = [(str(c.get("name", "?")), pretty_arguments(c.get("arguments")))
                 for c in (m.get("tool_calls") or []) if isinstance(c, dict)]
        out.append({"role": role, "kind": role if role in _ROLES else "other", "name": m.get("name"),
                    "content": m.get("content"), "reasoning": m.get("reasoning"), "tool_calls": calls})
    return out


def files_written(transcript: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(path, content) of every write_file action in the transcript, in order."""
    out = []
    for message in transcript:
        if not isinstance(message, dict):
            continue
        for call in message.get("tool_calls") or []:
            if not isinstance(call, dict) or call.get("name") != "write_file":
                continue
            args = call.get("arguments")
            if isinstance(args, str):
                try:
                    args = json.loads(args)
                except ValueError:
                    continue
            if isinstance(args, dict):
                out.append((str(args.get("path", "?")), str(args.get("content", ""))))
    return out


class Site:
    """Where each page of one scorecard lives, as links relative to the site's root."""

    def __init__(self, card: Scorecard) -> None:
        self.card = card
        self.model_slug = {m: slug(m) for m in card.models}
        self.task_slug = {t: slug(t) for t in card.tasks}
        self.page_of = {t.trial_id: 1 + i // PAGE_SIZE for i, t in enumerate(card.trials)}
        self.pages = max(1, -(-len(card.trials) // PAGE_SIZE))

    def task(self, task: str) -> str:
        return f"tasks/{self.task_slug[task]}.html"

    def pair(self, a: str, b: str) -> str:
        return f"pairs/{self.model_slug[a]}__{self.model_slug[b]}.html"

    def trial(self, trial_id: str) -> str:
        return f"trials/{trial_id}.html"

    def page(self, n: int) -> str:
        return f"trials/page-{n}.html"


def _render_summary_pages(card: Scorecard, site: Site, out_dir: Path, pairs: list[tuple[str, str]]) -> None:
    """The leaderboard, task, pair and trial-list pages."""
    env = environment()
    common = {"card": card, "site": site, "ALL": ALL_TASKS}
    chart = speed_chart(card, {m: "#m-" + site.model_slug[m] for m in card.models})
    _write(out_dir / "index.html", env.get_template("index.html.j2").render(root="", chart=chart, **common))
    task_tpl = env.get_template("task.html.j2")
    by_cell: dict[tuple[str, str, str], list[TrialRow]] = {}
    for t in card.trials:
        by_cell.setdefault((t.task, t.variant, t.model), []).append(t)
    for task in card.tasks:
        _write(out_dir / site.task(task), task_tpl.render(root="../", task=task, by_cell=by_cell, **common))
    pair_tpl = env.get_template("pair.html.j2")
    for a, b in dict.fromkeys(card.pairs() + [p for p in pairs if set(p) <= set(card.models)]):
        _write(out_dir / site.pair(a, b), pair_tpl.render(root="../", pair=card.pair(a, b), **common))
    list_tpl = env.get_template("trials.html.j2")
    for n in range(1, site.pages + 1):
        rows = card.trials[(n - 1) * PAGE_SIZE:n * PAGE_SIZE]
        _write(out_dir / site.page(n), list_tpl.render(root="../", rows=rows, page=n, **common))


def render_site(store: Store, run_ids: list[str], out_dir: Path,
                log: Callable[[str], None] = lambda m: None, pairs: list[tuple[str, str]] | None = None) -> Path:
    """Write the whole site for these runs and return the path of its index.html.

    Trial pages are most of the work. A trial never changes once committed and
    its page links only to pages whose names are stable, so a page rendered by
    the same templates is kept. The rest are split into chunks that this
    process and, on several cores, helper processes claim one at a time."""
    card = load_scorecard(store, run_ids)
    site = Site(card)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamps = out_dir / "trials" / ".rendered.json"
    stamp = _template_stamp()
    done = _read_stamps(stamps)
    stale = [t.trial_id for t in card.trials
             if done.get(t.trial_id) != stamp or not (out_dir / site.trial(t.trial_id)).is_file()]
    with tempfile.TemporaryDirectory(prefix="agenteval-report-") as tmp:
        queue = ChunkQueue(Path(tmp), stale)
        helpers = _start_helpers(store, site, out_dir, queue)
        try:
            _render_summary_pages(card, site, out_dir, pairs or [])
            pages = TrialPages(site, out_dir)
            while (chunk := queue.claim()) is not None:
                pages.render(store.trial_rows(chunk))
            failed = [p.wait() for p in helpers]
        finally:
            for p in helpers:
                if p.poll() is None:
                    p.kill()
                    p.wait()
    if any(failed):
        raise ReportError(f"rendering trial pages failed in a helper process (exit codes {failed})")
    done.update({t.trial_id: stamp for t in card.trials})
    stamps.parent.mkdir(parents=True, exist_ok=True)
    stamps.with_suffix(".tmp").write_text(json.dumps(done))
    stamps.with_suffix(".tmp").replace(stamps)
    _copy_artifacts(card, out_dir, log)
    return out_dir / "index.html"


def _read_stamps(path: Path) -> dict[str, str]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _template_stamp() -> str:
    import hashlib

    from agenteval import __version__

    digest = hashlib.sha256(__version__.encode())
    for path in sorted(TEMPLATES.glob("*.j2")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class ChunkQueue:
    """Chunks of trial ids as files in a folder; a process claims one by renaming it (atomic)."""

    def __init__(self, folder: Path, ids: list[str] | None = None) -> None:
        self.folder = folder
        (folder / "todo").mkdir(exist_ok=True)
        (folder / "taken").mkdir(exist_ok=True)
        for i in range(0, len(ids or []), CHUNK):
            (folder / "todo" / f"{i:09d}.json").write_text(json.dumps((ids or [])[i:i + CHUNK]))

    def __len__(self) -> int:
        return len(list((self.folder / "todo").iterdir()))

    def claim(self) -> list[str] | None:
        for path in sorted((self.folder / "todo").iterdir()):
            mine = self.folder / "taken" / f"{path.name}.{os.getpid()}"
            try:
                path.rename(mine)
            except FileNotFoundError:
                continue  # another process took it first
            ids: list[str] = json.loads(mine.read_text())
            return ids
        return None


def _start_helpers(store: Store, site: Site, out_dir: Path, queue: ChunkQueue) -> list[Any]:
    """Helper processes, started as ``python -m agenteval.report.worker`` (never by forking or
    re-importing the caller's main module). They open the DuckDB file read-only, which a file
    held by a writer does not allow: the runner, which renders with the file open, renders alone."""
    count = min((os.cpu_count() or 1) - 1, len(queue) - 1)
    if count < 1 or len(queue) * CHUNK < PARALLEL_FROM or not store.read_only:
        return []
    import pickle
    import subprocess
    import sys

    job = queue.folder / "site.pickle"
    job.write_bytes(pickle.dumps((str(store.path), site, out_dir, queue.folder)))
    return [subprocess.Popen([sys.executable, "-m", "agenteval.report.worker", str(job)]) for _ in range(count)]


class TrialPages:
    """Renders trial pages of one site; shared by this process and the workers."""

    def __init__(self, site: Site, out_dir: Path) -> None:
        self.site, self.out_dir = site, out_dir
        self.template = environment().get_template("trial.html.j2")

    def render(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            transcript = record.get("transcript") or []
            _write(self.out_dir / self.site.trial(record["trial_id"]), self.template.render(
                root="../", t=record, transcript=messages(transcript), files=files_written(transcript),
                task_page=self.site.task(record["task"]) if record["task"] in self.site.task_slug else None))


def render_share(job: Path) -> None:
    """What a helper process does: claim chunks of trial pages and render them until none is left."""
    import pickle

    db_path, site, out_dir, folder = pickle.loads(job.read_bytes())
    pages = TrialPages(site, out_dir)
    queue = ChunkQueue(folder)
    with Store(db_path, read_only=True) as store:
        while (chunk := queue.claim()) is not None:
            pages.render(store.trial_rows(chunk))


def _write(path: Path, html: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # lone surrogates (broken UTF-8 that reached a record) become U+FFFD, never an exception
    path.write_bytes(html.encode("utf-8", "replace"))


def _copy_artifacts(card: Scorecard, out_dir: Path, log: Callable[[str], None]) -> None:
    """Screenshots live beside the run that took them; a site elsewhere gets its own copies."""
    target = out_dir / "artifacts"
    wanted = {t.trial_id for t in card.trials}
    for run in card.runs:
        source = Path(run.config.get("out") or "reports") / run.run_id / "artifacts"
        if not source.is_dir() or (target.is_dir() and source.resolve() == target.resolve()):
            continue
        for folder in source.iterdir():
            if folder.name in wanted and folder.is_dir() and not folder.is_symlink():
                shutil.copytree(folder, target / folder.name, dirs_exist_ok=True, symlinks=False)
        log(f"copied the screenshots of run {run.run_id} into {target}")
