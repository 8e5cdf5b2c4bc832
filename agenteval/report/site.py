"""Writing a scorecard as a static site: it opens from disk and can be hosted as is.

::

    index.html                the leaderboard: model x task, speed, fingerprints, the chart
    ladder.html               a quantization ladder's rungs against its reference (``ladder``; one
                              ladder-<run>.html each where several ladder runs share a site)
    tasks/<task>.html         one task: model x variant, pass@k, every sample
    pairs/<a>__<b>.html       two models on the trials they share, McNemar's p
    trials/page-<n>.html      every trial, PAGE_SIZE to a page
    trials/<trial_id>.html    one trial: transcript, tool calls, files, execs, checks, screenshots
    artifacts/<trial_id>/     screenshots, copied when the site is not the run's own folder

Everything a model, a verifier or a sandbox produced is untrusted text:
templates autoescape it (``fragments`` escapes what it writes), no page runs
a script (the Content-Security-Policy forbids them), nothing it wrote becomes
a link, and long text is clipped.
"""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from markupsafe import Markup

from agenteval.errors import ReportError
from agenteval.logs import Log
from agenteval.report.chart import speed_chart
from agenteval.report.data import ALL_TASKS, Scorecard, load_scorecard, load_trial_pages, slug
from agenteval.report.fragments import (
    MAX_TEXT, agent_summary, call_rows, check_rows, clip, dot, exec_details, files_written, fingerprint_text,
    number_text, outcome, pretty_arguments, seconds_text, transcript_html,
)
from agenteval.report.ladder import Ladder, load_ladders, render_ladders
from agenteval.report.rows import TrialRow
from agenteval.store import Store

if TYPE_CHECKING:
    import jinja2

TEMPLATES = Path(__file__).parent / "templates"
PAGE_SIZE = 200
CHUNK = 500  # trials read from the store at a time
PARALLEL_FROM = 1500  # trials from which worker processes pay for their start
MAX_LIST = 500  # rows of a list on one page (discordant pairs, samples of a cell)
_ARTIFACT = re.compile(r"^artifacts/[A-Za-z0-9_-]+/[A-Za-z0-9][A-Za-z0-9._-]*$")


def environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(seconds=_seconds, pct=_pct, num=_num, clip=clip, pretty=pretty_arguments, size=_size,
                       share=_share)
    env.globals.update(safe_artifact=lambda p: bool(_ARTIFACT.match(str(p))), MAX_TEXT=MAX_TEXT, MAX_LIST=MAX_LIST,
                       check_rows=check_rows, call_rows=call_rows, agent_summary=agent_summary,
                       transcript_html=transcript_html, exec_details=exec_details, fingerprint_text=fingerprint_text, outcome=outcome, dot=dot)
    return env


# numbers hold no markup: returned as Markup so autoescape skips them (a page has hundreds)
def _seconds(v: float | None) -> Markup:
    return Markup(seconds_text(v))


def _pct(v: float | None) -> Markup:
    return Markup("-" if v is None else f"{100 * v:.0f}%")


def _num(v: float | None, fmt: str = "%.1f") -> Markup:
    return Markup(number_text(v, fmt))


def _size(n: int | None) -> Markup:
    """Bytes in decimal units (a GGUF's size as file managers show it)."""
    if n is None:
        return Markup("-")
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return Markup(f"{n / scale:.2f} {unit}")
    return Markup(f"{n} B")


def _share(v: float | None) -> Markup:
    """A share to a tenth of a percent (top-1 agreement lives between 90% and 100%)."""
    return Markup("-" if v is None else f"{100 * v:.1f}%")


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
        return trial_page_path(trial_id)

    def task_pages(self) -> dict[str, str]:
        return {t: self.task(t) for t in self.card.tasks}

    def page(self, n: int) -> str:
        return f"trials/page-{n}.html"


def _render_summary_pages(card: Scorecard, site: Site, out_dir: Path, pairs: list[tuple[str, str]],
                          ladders: list[Ladder]) -> None:
    """The leaderboard, ladder, task, pair and trial-list pages."""
    env = environment()
    common = {"card": card, "site": site, "ALL": ALL_TASKS, "ladders": ladders}
    chart = speed_chart(card, {m: "#m-" + site.model_slug[m] for m in card.models})
    _write(out_dir / "index.html", env.get_template("index.html.j2").render(root="", chart=chart, **common))
    render_ladders(env, ladders, out_dir, _write, common)
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
                log: Log = lambda m: None, pairs: list[tuple[str, str]] | None = None) -> Path:
    """Write the whole site for these runs and return the path of its index.html.

    Trial pages are most of the work. A trial never changes once committed and
    its page links only to pages whose names are stable, so a page rendered by
    the same templates is kept. The rest are split into chunks that this
    process and, on several cores, helper processes claim one at a time."""
    with _heap_frozen():
        return _render_site(store, run_ids, out_dir, log, pairs or [])


@contextmanager
def _heap_frozen() -> Iterator[None]:
    """Garbage collections during the render skip the objects that were alive before it.

    The render allocates millions of short-lived objects, so Python collects hundreds of
    times; each full collection walked every object of the caller too (``agenteval run``
    holds its trial records): 0.7 s of CPU time in a 10,000-trial render."""
    if gc.get_freeze_count():  # the caller froze its own objects: leave that to it
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _render_site(store: Store, run_ids: list[str], out_dir: Path, log: Log,
                 pairs: list[tuple[str, str]]) -> Path:
    card = load_scorecard(store, run_ids)
    ladders = load_ladders(store, run_ids)  # one query for runs that are not ladders
    site = Site(card)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamps = out_dir / "trials" / ".rendered.json"
    stamp = _template_stamp()
    done = _read_stamps(stamps)
    stale = [t.trial_id for t in card.trials
             if done.get(t.trial_id) != stamp or not (out_dir / site.trial(t.trial_id)).is_file()]
    with tempfile.TemporaryDirectory(prefix="agenteval-report-") as tmp:
        queue = ChunkQueue(Path(tmp), stale)
        helpers = _start_helpers(store, site.task_pages(), out_dir, queue)
        try:
            _render_summary_pages(card, site, out_dir, pairs, ladders)
            pages = TrialPages(site.task_pages(), out_dir)
            while (chunk := queue.claim()) is not None:
                pages.render(load_trial_pages(store, chunk))
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
    for path in [Path(__file__).with_name("fragments.py"), *sorted(TEMPLATES.glob("*.j2"))]:
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


def _start_helpers(store: Store, task_pages: dict[str, str], out_dir: Path,
                   queue: ChunkQueue) -> list[subprocess.Popen[bytes]]:
    """Helper processes, started as ``python -m agenteval.report.worker`` (never by forking or
    re-importing the caller's main module). They open the DuckDB file read-only, which a file
    held by a writer does not allow: the runner, which renders with the file open, renders alone."""
    count = min((os.cpu_count() or 1) - 1, len(queue) - 1)
    if count < 1 or len(queue) * CHUNK < PARALLEL_FROM or not store.read_only:
        return []
    import pickle
    import sys

    job = queue.folder / "site.pickle"
    job.write_bytes(pickle.dumps((str(store.path), task_pages, out_dir, queue.folder)))
    return [subprocess.Popen([sys.executable, "-m", "agenteval.report.worker", str(job)]) for _ in range(count)]


def trial_page_path(trial_id: str) -> str:
    """Where a trial's page lives, relative to the site's root."""
    return f"trials/{trial_id}.html"


class TrialPages:
    """Renders trial pages of one site; shared by this process and the workers."""

    def __init__(self, task_pages: dict[str, str], out_dir: Path) -> None:
        self.task_pages, self.out_dir = task_pages, out_dir
        self.template = environment().get_template("trial.html.j2")
        (out_dir / "trials").mkdir(parents=True, exist_ok=True)

    def render(self, trials: list[TrialRow]) -> None:
        for t in trials:
            _write(self.out_dir / trial_page_path(t.trial_id), self.template.render(
                root="../", t=t, files=files_written(t.transcript), task_page=self.task_pages.get(t.task)), mkdir=False)


def render_share(job: Path) -> None:
    """What a helper process does: claim chunks of trial pages and render them until none is left."""
    import pickle

    db_path, task_pages, out_dir, folder = pickle.loads(job.read_bytes())
    pages = TrialPages(task_pages, out_dir)
    queue = ChunkQueue(folder)
    with Store(db_path, read_only=True) as store:
        while (chunk := queue.claim()) is not None:
            pages.render(load_trial_pages(store, chunk))


def _write(path: Path, html: str, mkdir: bool = True) -> None:
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    # lone surrogates (broken UTF-8 that reached a record) become U+FFFD, never an exception
    data = memoryview(html.encode("utf-8", "replace"))
    # os.open, not open(): a buffered file object costs two more system calls, which a
    # large report pays ten thousand times
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


def _copy_artifacts(card: Scorecard, out_dir: Path, log: Log) -> None:
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
