"""tasks/translate without Docker: its spec, its instruction, its oracle and its hidden verifier.

The verifier runs by hand (no secret file, so it prints its checks as JSON)
with the host's markdown-it-py; tests/integration/test_translate.py runs it in
the sandbox with Debian's. The oracle passes every variant; correct
translations written differently pass; every mutation of the oracle fails the
check meant to catch it; hostile files (links, FIFOs, floods) are reported,
never followed, and never crash or hang the verifier.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import markdown_it  # noqa: F401  verify.py needs it; it comes with rich, a core dependency
import pytest

from tests.fixtures.translate.mutations import (ALL_CHECKS, CODE, COMPLETE, EXISTS, GLOSSARY, IDENTIFIERS, IDS, MUTATIONS,
                                                NUMBERS, TABLES, TASK, UNTRANSLATED, VARIANTS, Mutation, alternatives,
                                                oracle)

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "agenteval" / "verify" / "harness"
VERIFY = TASK / "tests" / "verify.py"
SOLUTION = TASK / "solution"


# -- running the oracle and the verifier ---------------------------------------------------------------
def solve(ws: Path, vid: str) -> Path:
    """solution/solve.sh the way the oracle runs it: bash, cwd = workspace, AGENTEVAL_* set."""
    ws.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "AGENTEVAL_SOLUTION": str(SOLUTION), "AGENTEVAL_VARIANT_ID": vid,
           "AGENTEVAL_VARIANT": json.dumps(VARIANTS[vid])}
    subprocess.run(["bash", str(SOLUTION / "solve.sh")], cwd=ws, env=env, check=True, timeout=30)
    return ws / "output.md"


def verify(ws: Path, vid: str, params: dict[str, Any] | None = None, timeout: float = 60) -> dict[str, dict[str, Any]]:
    """verify.py by hand; its checks by name, in order, after sanity checks on the verdict itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTEVAL_")}
    env.update(AGENTEVAL_WORKSPACE=str(ws), AGENTEVAL_VARIANT_ID=vid,
               AGENTEVAL_VARIANT=json.dumps(VARIANTS[vid] if params is None else params),
               PYTHONPATH=str(HARNESS), PYTHONDONTWRITEBYTECODE="1", LANG="C.UTF-8")
    proc = subprocess.run([sys.executable, str(VERIFY)], cwd=VERIFY.parent, env=env, capture_output=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    checks = json.loads(proc.stdout)["checks"]
    names = [c["name"] for c in checks]
    assert "verifier ran to the end" not in names, checks[-1]["message"]
    assert names == ALL_CHECKS, names   # always the same checks, in the same order
    return {c["name"]: c for c in checks}


def write(ws: Path, content: str | bytes) -> Path:
    ws.mkdir(parents=True, exist_ok=True)
    path = ws / "output.md"
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def failing(checks: dict[str, dict[str, Any]]) -> set[str]:
    return {name for name, c in checks.items() if not c["passed"]}


def explain(checks: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {n: checks[n]["message"] for n in failing(checks)}


# -- the task's own content ------------------------------------------------------------------------------
def test_task_loads_and_covers_the_brief() -> None:
    """At least 4 documents in at least 3 languages, rendered by the framework's loader."""
    from agenteval.task import load_task

    task = load_task(TASK)
    assert [v.id for v in task.variants()] == IDS
    assert len(IDS) >= 4 and len({VARIANTS[v]["lang"] for v in IDS}) >= 3
    assert task.spec.sandbox.image == "markdown"


@pytest.mark.parametrize("vid", IDS)
def test_source_has_every_feature_the_checks_judge(vid: str) -> None:
    """Each source: one H1, H2 and H3 sections, both list kinds, a tagged fence, a table with
    numbers and units, numbers with units and identifiers in the prose, every glossary term."""
    p = VARIANTS[vid]
    source: str = p["source"]
    lines = source.split("\n")
    assert 40 <= len(lines) <= 80, len(lines)
    assert source.endswith("\n") and not source.endswith("\n\n") and "\r" not in source and "\t" not in source
    assert not any(line.startswith("~~~") for line in lines), "would close the instruction's fence"
    fenced = False
    prose: list[str] = []
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            prose.append(line)
    heads = [len(m.group(1)) for m in (re.match(r"(#+) ", line) for line in prose) if m]
    assert heads.count(1) == 1 and heads[0] == 1 and heads.count(2) >= 3 and heads.count(3) >= 1, heads
    assert any(re.match(r"- ", line) for line in prose) and any(re.match(r"\d+\. ", line) for line in prose)
    assert re.search(r"^```[a-z]+\n", source, re.M)
    table = [line for line in prose if line.startswith("|")]
    assert len(table) >= 5 and any(re.search(r"\d+(,\d+)? ?(GB|MB|Mo|Go|ms|s|%|日)", r) for r in table[2:])
    text = "\n".join(line for line in prose if not line.startswith("|"))
    assert re.search(r"\d+(,\d+)? ?(GB|ms|Sekunden|secondes|segundos|分|秒|日)", text)
    assert re.search(r"`[^`]*(--|/|_)[^`]*`", text)
    unquoted = re.sub(r"`[^`]*`", " ", "\n".join(prose)).casefold()
    for term, english in p["glossary"].items():
        assert term.casefold() in unquoted, f"glossary term {term!r} is not used in the source"
        assert english.isascii() and english == english.lower(), english


@pytest.mark.parametrize("vid", IDS)
def test_workspace_source_file_equals_the_params(vid: str) -> None:
    """environment = "sources/<id>" must hand the agent exactly the document the verifier compares with."""
    from agenteval.task import load_task

    task = load_task(TASK)
    variant = task.variants([vid])[0]
    own = TASK / "sources" / vid
    assert task.environment_dirs(variant) == [own]
    assert (own / "source.md").read_text(encoding="utf-8") == VARIANTS[vid]["source"]
    assert sorted(p.name for p in own.iterdir()) == ["source.md"]
    assert "/workspace/source.md" in task.render_instruction(variant)


@pytest.mark.parametrize("vid", IDS)
def test_instruction_shows_the_source_and_the_glossary(vid: str) -> None:
    from agenteval.task import load_task

    task = load_task(TASK)
    text = task.render_instruction(next(v for v in task.variants() if v.id == vid))
    p = VARIANTS[vid]
    assert "~~~~~~~~\n" + p["source"] + "~~~~~~~~\n" in text
    assert "/workspace/output.md" in text and p["language"] in text
    for term, english in p["glossary"].items():
        assert f"| {term} | {english} |" in text
    assert "{{" not in text and "{%" not in text


# -- the oracle and correct alternatives pass --------------------------------------------------------------
@pytest.mark.parametrize("vid", IDS)
def test_oracle_passes(tmp_path: Path, vid: str) -> None:
    out = solve(tmp_path / "ws", vid)
    assert out.read_text(encoding="utf-8") == oracle(vid)
    checks = verify(tmp_path / "ws", vid)
    assert not failing(checks), explain(checks)


@pytest.mark.parametrize(("vid", "path"), alternatives(), ids=[p.name for _, p in alternatives()])
def test_correct_alternative_passes(tmp_path: Path, vid: str, path: Path) -> None:
    """Other wording, *, + and 1) markers, setext and closed ATX headings, ~~~ and ```` fences,
    reflowed lines, padded and aligned tables, spelled-out units and small numbers."""
    write(tmp_path, path.read_bytes())
    checks = verify(tmp_path, vid)
    assert not failing(checks), explain(checks)


def test_alternatives_cover_the_brief() -> None:
    """At least three correct alternatives for one document, in different Markdown spellings."""
    by_variant: dict[str, list[str]] = {}
    for vid, path in alternatives():
        assert vid in VARIANTS, path
        by_variant.setdefault(vid, []).append(path.read_text(encoding="utf-8"))
    texts = max(by_variant.values(), key=len)
    assert len(texts) >= 3
    joined = "\n".join(texts)
    assert re.search(r"^\* ", joined, re.M) and re.search(r"^=+$", joined, re.M) and re.search(r"^~~~", joined, re.M)
    assert re.search(r"^\|\s+\S.*\s{2,}\|", joined, re.M), "a table with padded cells"
    assert any(oracle(vid) not in by_variant[vid] for vid in by_variant)


@pytest.mark.parametrize("vid", IDS)
def test_crlf_line_ends_and_a_bom_pass(tmp_path: Path, vid: str) -> None:
    write(tmp_path, "\ufeff" + oracle(vid).replace("\n", "\r\n"))
    checks = verify(tmp_path, vid)
    assert not failing(checks), explain(checks)


# -- mutations fail, each with the check meant to catch it ---------------------------------------------------
CASES = [(m, vid) for m in MUTATIONS for vid in m.variants]


@pytest.mark.parametrize(("mutation", "vid"), CASES, ids=[f"{m.name}-{vid}" for m, vid in CASES])
def test_mutation_fails(tmp_path: Path, mutation: Mutation, vid: str) -> None:
    content = mutation.apply(oracle(vid), vid)
    assert content != oracle(vid), "the mutation changed nothing"
    write(tmp_path, content)
    checks = verify(tmp_path, vid)
    bad = failing(checks)
    assert mutation.expect <= bad, explain(checks)
    if mutation.exact:
        assert bad == mutation.expect, explain(checks)
    for name in mutation.expect - {EXISTS}:
        assert checks[name]["message"], name


def test_messages_say_expected_and_found(tmp_path: Path) -> None:
    vid = "de-cache-runbook"
    text = oracle(vid).replace("below 12 ms", "below 21 ms").replace("| 3.4 GB |", "| 3.2 GB |")
    text = text.replace("# Zwischenspeicher auf allen Knoten leeren", "# Flush the cache")
    text = text.replace("Flush the cache only when", "Leeren Sie den Zwischenspeicher nur, wenn")
    write(tmp_path, text)
    checks = verify(tmp_path, vid)
    assert failing(checks) == {CODE, TABLES, NUMBERS, GLOSSARY, UNTRANSLATED}, explain(checks)
    assert "12 ms (source line 5, '12 ms') is missing" in checks[NUMBERS]["message"]
    assert "expected the numbers 3.4 GB, found 3.2 GB" in checks[TABLES]["message"]
    assert "row 3 column 3" in checks[TABLES]["message"]
    assert "expected '# Zwischenspeicher auf allen Knoten leeren', found '# Flush the cache'" in checks[CODE]["message"]
    assert "reads as German" in checks[UNTRANSLATED]["message"] and "line 33" in checks[UNTRANSLATED]["message"]
    assert "source term 'Zwischenspeicher' is still there (line 33)" in checks[GLOSSARY]["message"]


# -- numbers by each language's conventions ---------------------------------------------------------------------
NUMBER_CASES = [
    ("de", "Es sind 3,5 GB und 1.024 MB.", "It is 3.5 GB and 1,024 MB.", True),
    ("de", "Es sind 3,5 GB und 1.024 MB.", "It is 3.5 GB and 1024 MB.", True),
    ("de", "Es sind 3,5 GB und 1.024 MB.", "It is 3,5 GB and 1,024 MB.", False),
    ("de", "Es sind 3,5 GB und 1.024 MB.", "It is 3.5 GB and 1.024 MB.", False),
    ("de", "Es dauert 30 Sekunden.", "It takes 30 seconds.", True),
    ("de", "Es dauert 30 Sekunden.", "It takes a 30-second pause.", True),
    ("de", "Es dauert 30 Sekunden.", "It takes 30 minutes.", False),
    ("de", "Es dauert 30 Sekunden.", "It takes 30 ms.", False),
    ("de", "Bis zu 40 % mehr.", "Up to 40% more.", True),
    ("de", "Bis zu 40 % mehr.", "Up to 40 percent more.", True),
    ("de", "Mit 2 Knoten.", "With two nodes.", True),
    ("fr", "Valable 3\u202f600 secondes.", "Valid for 3,600 seconds.", True),
    ("fr", "Valable 3 600 secondes.", "Valid for 3600 s.", True),
    ("fr", "Jusqu'à 2,5 Go.", "Up to 2.5 GB.", True),
    ("fr", "Jusqu'à 2,5 Go.", "Up to 2.5 MB.", False),
    ("es", "Python 3.11 o posterior.", "Python 3.11 or later.", True),
    ("es", "Python 3.11 o posterior.", "Python 3.1 or later.", False),
    ("es", "Durante 14 días.", "For 14 days.", True),
    ("ja", "約 120 GB で、約 40 分かかります。", "About 120 GB, about 40 minutes.", True),
    ("ja", "約 120 GB で、約 40 分かかります。", "About 120 GB, about 40 seconds.", False),
    ("ja", "86400 秒未満", "under 86,400 seconds", True),
    ("ja", "アラートを 1 時間抑止します。", "Silence alerts for an hour.", True),
    ("ja", "アラートを 1 時間抑止します。", "Silence alerts for a while.", False),
    ("fr", "La version 3 de l'API.", "API v3.", True),
    ("de", "Im 02:00-Fenster (UTC).", "In the 2:00 AM window (UTC).", True),
]


@pytest.mark.parametrize(("lang", "source", "output", "ok"), NUMBER_CASES)
def test_number_conventions(tmp_path: Path, lang: str, source: str, output: str, ok: bool) -> None:
    params = {"lang": lang, "glossary": {}, "source": f"# T\n\n{source}\n"}
    write(tmp_path, f"# T\n\n{output}\n")
    checks = verify(tmp_path, "numbers", params)
    assert checks[NUMBERS]["passed"] is ok, checks[NUMBERS]["message"]


# -- units where English grammar puts them ---------------------------------------------------------------------
# A number keeps its unit across up to two other words but not across a number, punctuation or a function word;
# ranges share their unit; "a"/"an", "per", "each", "every" before a unit imply one of it and add no number.
PHRASING_CASES = [
    # words between the number and its unit
    ("es", "Espere 60 segundos seguidos.", "Wait for 60 consecutive seconds.", True),
    ("es", "Espere 60 segundos seguidos.", "Wait for sixty consecutive seconds.", True),
    ("es", "Espere 60 segundos seguidos.", "Wait 60 full, uninterrupted seconds.", False),   # a comma ends it
    ("es", "Espere 60 segundos seguidos.", "Wait 60 full uninterrupted seconds.", True),
    ("es", "Espere 60 segundos seguidos.", "Wait 60 straight seconds in a row.", True),
    ("es", "Espere 60 segundos seguidos.", "Wait for 60 consecutive minutes.", False),
    ("es", "Espere 60 segundos seguidos.", "Wait for 60 checks in a row.", False),
    ("es", "Espere 60 segundos seguidos.", "Wait for 60 checks per second.", False),
    ("es", "Espere 60 segundos seguidos.", "Wait for 60 checks, a few seconds apart.", False),
    ("es", "Espere 60 segundos seguidos.", "Wait for 60 of the seconds.", False),
    ("es", "Espere 60 segundos seguidos.", "Wait for 60 slow health check seconds.", False),     # 3 words between
    ("es", "Espere 60 segundos seguidos.", "Wait 60 times, seconds apart.", False),
    ("de", "Warten Sie 30 Sekunden.", "Wait 30 more seconds.", True),
    ("de", "Warten Sie 30 Sekunden.", "Wait another 30 seconds.", True),
    ("de", "Warten Sie 30 Sekunden.", "Wait a 30-second pause.", True),
    ("de", "Es dauert 45 Sekunden.", "It takes forty-five seconds.", True),
    ("de", "Es dauert 45 Sekunden.", "It takes forty seconds.", False),
    ("de", "Es dauert 20 Minuten.", "It takes twenty minutes.", True),
    ("de", "Es dauert 15 Minuten.", "It takes a quarter of an hour.", False),                 # no conversion
    ("de", "Mit 2 Knoten.", "With a few nodes.", False),
    ("de", "Mit 2 Knoten.", "With a couple of nodes.", False),
    # ranges
    ("es", "Tarda entre 4 y 7 minutos.", "It takes 4 to 7 minutes.", True),
    ("es", "Tarda entre 4 y 7 minutos.", "It takes 4-7 minutes.", True),
    ("es", "Tarda entre 4 y 7 minutos.", "It takes between four and seven minutes.", True),
    ("es", "Tarda entre 4 y 7 minutos.", "It takes 4 minutes to 7 hours.", False),
    ("es", "Tarda entre 4 y 7 minutos.", "It takes 4 minutes and 7 more.", False),
    ("es", "Tarda entre 4 minutos y 7 minutos.", "It takes 4 to 7 minutes.", True),
    ("es", "Tarda entre 4 minutos y 7 minutos.", "It takes 4 or 7 minutes.", True),
    ("es", "Tarda entre 4 minutos y 7 minutos.", "It takes 4 seconds to 7 minutes.", False),
    ("ja", "90 分から 2 時間かかります。", "It takes 90 minutes to two hours.", True),
    ("ja", "90 分から 2 時間かかります。", "It takes 90 to 2 hours.", False),
    # rates: "per X", "a X", "each X", "every X" are no number, and no unit of the number before them
    ("de", "Rund 4.200 Anfragen pro Sekunde.", "About 4,200 requests per second.", True),
    ("de", "Rund 4.200 Anfragen pro Sekunde.", "About 4,200 requests a second.", True),
    ("de", "Rund 4.200 Anfragen pro Sekunde.", "About 4,200 requests each second.", True),
    ("de", "Rund 4.200 Anfragen pro Sekunde.", "About 4,200 requests every second.", True),
    ("de", "Rund 4.200 Anfragen pro Sekunde.", "About 4,020 requests per second.", False),
    ("ja", "毎日 18 GB です。", "It is 18 GB a day.", True),
    ("ja", "毎日 18 GB です。", "It is 18 GB per day.", True),
    ("ja", "毎日 18 GB です。", "It is 18 GB each day.", True),
    ("ja", "毎日 18 GB です。", "It is 18 GB every day.", True),
    ("ja", "毎日 18 GB です。", "It is 18 GB/day.", True),
    ("ja", "毎日 18 GB です。", "It is 18 GB daily.", True),
    ("ja", "毎日 18 GB です。", "It is 18 a day.", False),
    ("ja", "毎日 18 GB です。", "It is 18 days.", False),
    ("ja", "15 分ごとに取得します。", "It runs every 15 minutes.", True),
    ("ja", "15 分ごとに取得します。", "It runs every fifteen minutes.", True),
    ("ja", "15 分ごとに取得します。", "It runs at 15-minute intervals.", True),
    ("ja", "15 分ごとに取得します。", "It runs 15 times every minute.", False),
    ("ja", "15 分ごとに取得します。", "It runs every 15 hours.", False),
    # "a"/"an" is one of the unit after it, and no number elsewhere
    ("ja", "アラートを 1 時間抑止します。", "Silence alerts for an hour.", True),
    ("ja", "アラートを 1 時間抑止します。", "Silence alerts for one hour.", True),
    ("ja", "アラートを 1 時間抑止します。", "Silence alerts for a full hour.", True),
    ("ja", "アラートを 1 時間抑止します。", "Silence alerts for an entire hour.", True),
    ("ja", "アラートを 1 時間抑止します。", "Silence alerts for a day.", False),
    ("ja", "アラートを 1 時間抑止します。", "Silence alerts for half an hour.", False),
    ("ja", "アラートを 1 時間抑止します。", "Silence alerts for a few hours.", False),
    ("ja", "アラートを 1 時間抑止します。", "Silence alerts for hours.", False),
    ("ja", "アラートを 1 時間抑止します。", "Silence alerts for a second.", False),
    # units before numbers, where English allows it
    ("fr", "Un délai de 30 s.", "A timeout of 30 s.", True),
    ("fr", "Un délai de 30 s.", "A 30 s timeout.", True),
    ("fr", "Un délai de 30 s.", "A timeout of 30.", False),
    ("fr", "La version 2 de l'API.", "Version 2 of the API.", True),
    ("fr", "La version 2 de l'API.", "Version two of the API.", True),
    ("fr", "La version 2 de l'API.", "API v2.", True),
    ("fr", "La version 2 de l'API.", "A second version of the API.", False),
]


@pytest.mark.parametrize(("lang", "source", "output", "ok"), PHRASING_CASES)
def test_units_are_kept_where_english_puts_them(tmp_path: Path, lang: str, source: str, output: str, ok: bool) -> None:
    params = {"lang": lang, "glossary": {}, "source": f"# T\n\n{source}\n"}
    write(tmp_path, f"# T\n\n{output}\n")
    checks = verify(tmp_path, "numbers", params)
    assert checks[NUMBERS]["passed"] is ok, checks[NUMBERS]["message"]


TABLE_CELL_CASES = [
    ("毎日 18 GB", "18 GB a day", True),
    ("毎日 18 GB", "18 GB per day", True),
    ("毎日 18 GB", "18 GB each day", True),
    ("毎日 18 GB", "18 GB every day", True),
    ("毎日 18 GB", "about 18 GB a day", True),
    ("毎日 18 GB", "18 GB/day", True),
    ("毎日 18 GB", "an 18 GB increase a day", True),
    ("毎日 18 GB", "18 a day", False),
    ("毎日 18 GB", "18 days", False),
    ("毎日 18 GB", "1 GB a day", False),
    ("毎日 18 GB", "18 GB in 2 days", False),
    ("毎日 18 GB", "18 GB, 1 a day", False),
    ("毎日 18 GB", "18 GB per 2 days", False),
    ("1 時間", "an hour", True),
    ("1 時間", "one hour", True),
    ("1 時間", "1 hour", True),
    ("1 時間", "a day", False),
    ("1 時間", "hourly", False),
    ("約 40 分", "about forty minutes", True),
    ("約 40 分", "about 40 minutes a run", True),
    ("約 40 分", "about 40 runs a minute", False),
    ("2 台", "two", True),
    ("2 台", "a pair", False),
]


@pytest.mark.parametrize(("cell", "output", "ok"), TABLE_CELL_CASES)
def test_table_cells_read_articles_and_rates_as_no_number(tmp_path: Path, cell: str, output: str, ok: bool) -> None:
    params = {"lang": "ja", "glossary": {}, "source": f"# T\n\n| 種類 | 値 |\n|---|---|\n| WAL | {cell} |\n"}
    write(tmp_path, f"# T\n\n| Kind | Value |\n|---|---|\n| WAL | {output} |\n")
    checks = verify(tmp_path, "tables", params)
    assert checks[TABLES]["passed"] is ok, checks[TABLES]["message"]


def test_number_messages_say_what_the_phrase_lacked(tmp_path: Path) -> None:
    params = {"lang": "es", "glossary": {},
              "source": "# T\n\nEspere 60 segundos seguidos.\n\n| A | B |\n|---|---|\n| x | 18 GB |\n"}
    write(tmp_path, "# T\n\nWait for 60 checks per second.\n\n| A | B |\n|---|---|\n| x | 18 a day |\n")
    checks = verify(tmp_path, "messages", params)
    assert "60 s (source line 3, '60 segundos') is missing (found only '60')" in checks[NUMBERS]["message"]
    assert ("expected the numbers 18 GB, found 18, 1 d (implied by 'a day') in '18 a day'"
            in checks[TABLES]["message"]), checks[TABLES]["message"]


@pytest.mark.parametrize(("output", "ok"), [
    ("Read the secret store, push to the container registry.", True),
    ("Read the secrets store, push to container registries.", True),
    ("Read the secret-store, push to the Container Registry.", True),
    ("Read the secret vault, push to the container registry.", False),
    ("Read the secret store, push to the registro de contenedores.", False),
])
def test_glossary_terms_allow_plurals_case_and_hyphens(tmp_path: Path, output: str, ok: bool) -> None:
    params = {"lang": "es", "source": "# T\n\nLea el almacén de secretos y publique en el registro de contenedores.\n",
              "glossary": {"almacén de secretos": "secret store", "registro de contenedores": "container registry"}}
    write(tmp_path, f"# T\n\n{output}\n")
    checks = verify(tmp_path, "glossary", params)
    assert checks[GLOSSARY]["passed"] is ok, checks[GLOSSARY]["message"]


WRONG_LANGUAGE = [
    "Ce manuel décrit le fonctionnement du service, placé devant l'interface des commandes de notre boutique.",
    "Este manual describe el funcionamiento del servicio, situado delante de la interfaz de pedidos de la tienda.",
    "Questo manuale descrive il funzionamento del servizio, posto davanti all'interfaccia degli ordini del negozio.",
]


@pytest.mark.parametrize("output", WRONG_LANGUAGE, ids=["French", "Spanish", "Italian"])
def test_a_translation_into_another_language_fails(tmp_path: Path, output: str) -> None:
    params = {"lang": "de", "glossary": {},
              "source": "# T\n\nDieses Handbuch beschreibt den Betrieb des Dienstes vor der Bestell-Schnittstelle "
                        "unseres Shops.\n"}
    write(tmp_path, "# T\n\nThis manual describes how the service in front of the order interface of our shop "
                    "is operated.\n")
    assert verify(tmp_path, "lang", params)[UNTRANSLATED]["passed"]
    write(tmp_path, f"# T\n\n{output}\n")
    checks = verify(tmp_path, "lang", params)
    assert not checks[UNTRANSLATED]["passed"] and "does not read as English" in checks[UNTRANSLATED]["message"]


def test_a_planted_source_md_changes_nothing(tmp_path: Path) -> None:
    """The source comes from the variant's params: a workspace source.md equal to the output is ignored."""
    vid = IDS[0]
    write(tmp_path, VARIANTS[vid]["source"])
    (tmp_path / "source.md").write_text(VARIANTS[vid]["source"], encoding="utf-8")
    assert UNTRANSLATED in failing(verify(tmp_path, vid))


def test_bare_identifiers_and_links_are_kept(tmp_path: Path) -> None:
    src = ("# T\n\nSetzen Sie MAX_CONN_COUNT und rufen Sie init_db() mit --dry-run auf; siehe /etc/app/app.conf "
           "und die [Doku](https://example.com/docs).\n")
    good = ("# T\n\nSet MAX_CONN_COUNT and call init_db() with --dry-run; see /etc/app/app.conf and the "
            "[docs](https://example.com/docs).\n")
    params = {"lang": "de", "glossary": {}, "source": src}
    write(tmp_path, good)
    assert verify(tmp_path, "ids", params)[IDENTIFIERS]["passed"]
    for old, new in [("MAX_CONN_COUNT", "MAX_CONNECTIONS"), ("init_db()", "init_db"), ("--dry-run", "--dryrun"),
                     ("/etc/app/app.conf", "/etc/app.conf"), ("(https://example.com/docs)", "(https://example.com)")]:
        write(tmp_path, good.replace(old, new))
        checks = verify(tmp_path, "ids", params)
        assert not checks[IDENTIFIERS]["passed"] and checks[IDENTIFIERS]["message"], (old, new)


# -- hostile files ----------------------------------------------------------------------------------------------
def test_missing_output_fails_every_check(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    checks = verify(tmp_path, IDS[0])
    assert failing(checks) == set(ALL_CHECKS)
    assert "found nothing there" in checks[EXISTS]["message"]
    not_checked = {n for n, c in checks.items() if c["message"] == "not checked: output.md is missing"}
    assert not_checked == set(ALL_CHECKS) - {EXISTS} and len(not_checked) >= 10


def test_symlink_to_a_correct_translation_is_refused(tmp_path: Path) -> None:
    good = write(tmp_path / "elsewhere", oracle(IDS[0]))
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "output.md").symlink_to(good)
    checks = verify(tmp_path / "ws", IDS[0])
    assert failing(checks) == set(ALL_CHECKS) and "symbolic link" in checks[EXISTS]["message"]


def test_directory_and_fifo_are_refused_without_hanging(tmp_path: Path) -> None:
    (tmp_path / "a" / "output.md").mkdir(parents=True)
    assert failing(verify(tmp_path / "a", IDS[0])) == set(ALL_CHECKS)
    (tmp_path / "b").mkdir()
    os.mkfifo(tmp_path / "b" / "output.md")
    checks = verify(tmp_path / "b", IDS[0], timeout=20)
    assert failing(checks) == set(ALL_CHECKS) and "regular file" in checks[EXISTS]["message"]


def test_huge_file_is_refused_quickly(tmp_path: Path) -> None:
    write(tmp_path, oracle(IDS[0]) + "x" * (64 * 1024 * 1024))
    checks = verify(tmp_path, IDS[0], timeout=20)
    assert failing(checks) == set(ALL_CHECKS) and "larger than" in checks[EXISTS]["message"]


def test_pathological_markdown_does_not_stall_the_verifier(tmp_path: Path) -> None:
    """Deep nesting, brackets and emphasis markers by the thousand, a huge table, thousands of
    long paragraphs for the copy detection: a verdict, in time, failing."""
    junk = ("> " * 500 + "- " * 500 + "[" * 20000 + "*_" * 20000 + "\n\n| a |\n|---|\n" + "| 1 |\n" * 3000
            + "\nThe cache answers requests in front of the order interface quickly.\n" * 2500)
    write(tmp_path, oracle(IDS[0]) + junk)
    assert len((tmp_path / "output.md").read_bytes()) < 512 * 1024
    started = time.monotonic()
    checks = verify(tmp_path, IDS[0], timeout=60)
    assert time.monotonic() - started < 30
    assert {TABLES, COMPLETE} <= failing(checks), explain(checks)
