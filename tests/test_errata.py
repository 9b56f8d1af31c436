"""--errata on probe run, probe rescore and report: corrected golds beside the published ones, exactly the
listed items changed, the ceiling, and entries naming no question counted and listed (tests/data/ holds the
synthetic errata file and its LoCoMo chat)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk_cli.cli import app
from realtalk_cli.data.errata import read_errata
from realtalk_cli.errors import RealtalkError

from .conftest import SAMPLE_JSON
from .llm_server import FakeLLM, serve_llm

runner = CliRunner()
DATA = Path(__file__).parent / "data"
ERRATA = DATA / "errata_synthetic.json"
LOCOMO_CHAT = DATA / "Chat_L_Ann_Bo.json"
GOLD = {q["question"]: q.get("answer") for q in json.loads(SAMPLE_JSON.read_text())["qa"]}
GOLD |= {"What did Ann paint?": "a pond", "When did Bo move?": "9 May 2023"}
GOLD |= {"When did Ana take Miso to the vet?": "08 March, 2024", "What breed might Ana's dog be?": "Part beagle"}
CHANGED = {("Chat_S_Ana_Ben", 2), ("Chat_S_Ana_Ben", 5), ("Chat_L_Ann_Bo", 0)}

pytestmark = pytest.mark.usefixtures("llm_env")


def reply(body: dict) -> str:
    """Answers as GOLD says; a judge that accepts a prediction written inside the gold it is shown."""
    prompt = body["messages"][-1]["content"]
    judged = re.search(r"Gold answer: (.*)\nPredicted answer: (.*)\n", prompt)
    if judged:
        gold, prediction = (g.strip().lower() for g in judged.groups())
        return json.dumps({"score": 1 if prediction and prediction in gold else 0})
    for question, answer in GOLD.items():
        if question in prompt:
            return answer or "Not mentioned in the conversation"
    return "unknown"


def probe(url: str, out: Path, *extra: str):
    args = ["probe", str(SAMPLE_JSON), str(LOCOMO_CHAT), "--model", "gpt-4o-mini", "--out", str(out)]
    args += ["--base-url", url, "--api-key-env", "TEST_LLM_KEY", *extra]
    return runner.invoke(app, args)


def rows_of(run: Path) -> dict[tuple, dict]:
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    return {(r["chat"], r["qa_index"]): r for r in rows}


def test_errata_change_exactly_the_listed_items_beside_the_published_scores(tmp_path: Path):
    fake = FakeLLM(reply=reply)
    with serve_llm(fake) as url:
        plain = probe(url, tmp_path / "plain", "--judge-model", "judge-model")
        result = probe(url, tmp_path / "run", "--judge-model", "judge-model", "--errata", str(ERRATA))
    assert plain.exit_code == 0 and result.exit_code == 0, result.output
    rows, before = rows_of(tmp_path / "run"), rows_of(tmp_path / "plain")
    assert {k for k, r in rows.items() if "erratum" in r} == CHANGED
    for key, row in rows.items():  # the published gold and its scores are those of a run without errata
        assert (row.get("answer"), row["f1"], row["judge_score"]) == (
            before[key].get("answer"),
            before[key]["f1"],
            before[key]["judge_score"],
        )
    vet = rows[("Chat_S_Ana_Ben", 2)]
    assert (vet["answer"], vet["f1"], vet["judge_score"]) == ("07 March, 2024", pytest.approx(2 / 3), 0.0)
    assert vet["erratum"]["gold"] == "08 March, 2024" and vet["erratum"]["f1"] == 1.0
    assert vet["erratum"]["judge_score"] == 1.0 and vet["erratum"]["judge_model"] == "openai:judge-model"
    # the judge saw the corrected gold with the other accepted answers after it
    judged = [b["messages"][-1]["content"] for b in fake.requests if "Gold answer: 08 March, 2024" in str(b)]
    assert len(judged) == 1
    assert "Gold answer: 08 March, 2024 (also accepted: 7 or 8 March 2024; 8 March 2024; March 8, 2024)" in judged[0]
    # a WRONG_CITATION entry's correct_answer is never a gold, nor shown to a judge
    assert "erratum" not in rows[("Chat_L_Ann_Bo", 1)]
    assert not any("the day after the painting" in json.dumps(b) for b in fake.requests)

    report = json.loads((tmp_path / "run" / "report.json").read_text())
    section = report["errata"]
    assert section["counts"] == {"applied": 3, "evidence-only": 1, "not-asked": 0, "outside": 2, "not-found": 5}
    assert [n["id"] for n in section["not_found"]] == [
        "realtalk_Chat_S_Ana_Ben_qa9",
        "locomo_1_qa1",
        "locomo_1_qa5",
        "locomo_12_qa0",
        "conv-30_q0",
    ]
    assert {(c["chat"], c["qa_index"]) for c in section["changed"]} == CHANGED
    ceiling = section["ceiling"]
    assert ceiling["2 temporal"] == {"asked": 3, "corrected": 1, "ceiling": round(2 / 3, 4)}
    assert ceiling["4 single-hop"]["ceiling"] == 0.0 and "5 adversarial" not in ceiling  # not audited
    assert ceiling["overall"] == {"asked": 8, "corrected": 3, "ceiling": 0.625}
    overall = section["scores"]["overall"]
    assert overall["f1"] == report["overall"]["overall"]["f1"]  # the published column is the run's own score
    assert overall["judge"] < overall["judge_corrected"]
    assert report["complete"] is True
    md = (tmp_path / "run" / "report.md").read_text()
    assert "## Errata" in md and "locomo_12_qa0" in md and "| realtalk_Chat_S_Ana_Ben_qa2 |" in md


def test_errata_verdicts_are_kept_on_resume_and_rescore_without_a_judge_keeps_them(tmp_path: Path):
    fake = FakeLLM(reply=reply)
    with serve_llm(fake) as url:
        assert probe(url, tmp_path / "run", "--judge-model", "judge-model", "--errata", str(ERRATA)).exit_code == 0
        sent = len(fake.requests)
        again = probe(url, tmp_path / "run", "--judge-model", "judge-model", "--errata", str(ERRATA), "--no-cache")
        assert again.exit_code == 0 and len(fake.requests) == sent  # nothing asked twice
        rescored = runner.invoke(app, ["probe", "rescore", str(tmp_path / "run"), "--errata", str(ERRATA), "--json"])
    assert rescored.exit_code == 0, rescored.output
    section = json.loads(rescored.stdout)["errata"]
    assert section["scores"]["overall"]["judge_corrected"] is not None
    assert section["counts"]["applied"] == 3


def test_rescore_with_a_judge_and_errata_judges_the_changed_items_against_the_corrected_gold(tmp_path: Path):
    # the judge's client is closed once every row is judged: the corrected golds are asked on a client of their own
    fake = FakeLLM(reply=reply)
    with serve_llm(fake) as url:
        assert probe(url, tmp_path / "run", "--judge-model", "judge-model").exit_code == 0
        args = ["probe", "rescore", str(tmp_path / "run"), "--judge-model", "judge-model", "--errata", str(ERRATA)]
        rescored = runner.invoke(app, [*args, "--base-url", url, "--api-key-env", "TEST_LLM_KEY", "--json"])
    assert rescored.exit_code == 0, rescored.output
    rows = rows_of(tmp_path / "run")
    assert {k for k, r in rows.items() if r.get("erratum", {}).get("judge_score") is not None} == CHANGED
    assert json.loads(rescored.stdout)["run"]["rescore_judge_requests"] == len(rows) + len(CHANGED)


def test_rescore_without_the_chat_files_checks_only_what_the_run_asked(tmp_path: Path):
    chats = tmp_path / "chats"
    chats.mkdir()
    sample, locomo = shutil.copy(SAMPLE_JSON, chats), shutil.copy(LOCOMO_CHAT, chats)
    fake = FakeLLM(reply=reply)
    with serve_llm(fake) as url:
        args = ["probe", str(sample), str(locomo), "--model", "gpt-4o-mini", "--out", str(tmp_path / "run")]
        assert runner.invoke(app, [*args, "--base-url", url, "--api-key-env", "TEST_LLM_KEY"]).exit_code == 0
    shutil.rmtree(chats)  # the manifest's files are gone: the chat found by name (conv-30 is sample 1) and rows
    result = runner.invoke(app, ["probe", "rescore", str(tmp_path / "run"), "--errata", str(ERRATA), "--json"])
    assert result.exit_code == 0, result.output
    section = json.loads(result.stdout)["errata"]
    assert section["counts"]["applied"] == 2  # locomo_1_qa0 is not placed: no file says Chat_L_Ann_Bo is conv-30
    assert {(c["chat"], c["qa_index"]) for c in section["changed"]} == CHANGED - {("Chat_L_Ann_Bo", 0)}


def bad_files() -> dict[str, tuple[str, str]]:
    good = json.loads(ERRATA.read_text())
    twice = [good[0], {**good[0], "accepted_answers": ["09 March, 2024"]}]
    no_answer = [good[0], {k: v for k, v in good[4].items() if k != "correct_answer"}]
    return {
        "not json": ("[{", "malformed JSON"),
        "not a list": ('{"question_id": "locomo_0_qa1"}', "expected a JSON list"),
        "no answer": (json.dumps(no_answer), "[1]: missing field 'correct_answer'"),
        "empty accepted": (json.dumps([{**good[0], "accepted_answers": []}]), "[0].accepted_answers: empty"),
        "empty gold": (json.dumps([{**good[4], "correct_answer": " "}]), "[0].correct_answer: empty"),
        "id a number": (json.dumps([{**good[4], "question_id": 7}]), "[0].question_id: expected str, found int"),
        "two golds": (json.dumps(twice), "[0] and [1] both correct the gold of realtalk_Chat_S_Ana_Ben_qa2"),
    }  # fmt: skip


@pytest.mark.parametrize("name", list(bad_files()))
def test_a_malformed_errata_file_is_one_line_and_exit_2_before_anything_is_written(tmp_path: Path, name: str):
    text, message = bad_files()[name]
    path = tmp_path / "errata.json"
    path.write_text(text)
    fake = FakeLLM(reply=reply)
    with serve_llm(fake) as url:
        result = probe(url, tmp_path / "run", "--errata", str(path))
    assert result.exit_code == 2 and not fake.requests and not (tmp_path / "run").exists()
    assert message in result.output and str(path) in result.output and "Traceback" not in result.output


def test_reader_keeps_wrong_citation_out_of_the_golds_and_orders_the_judges_answers():
    errata = read_errata(ERRATA)
    by_id = {(e.question_id, e.kind): e for e in errata.entries}
    citation = by_id[("locomo_1_qa1", "WRONG_CITATION")]
    assert citation.gold is None and not citation.changes_gold and citation.judge_gold is None
    fix = by_id[("realtalk_Chat_S_Ana_Ben_qa2", "date")]
    assert (fix.chat, fix.qa_index, fix.gold) == ("Chat_S_Ana_Ben", 2, "08 March, 2024")
    assert fix.aliases == ("7 or 8 March 2024", "8 March 2024", "March 8, 2024")
    assert by_id[("conv-30_q0", "HALLUCINATION")].dataset is None  # kept, to be listed as naming no question
    with pytest.raises(RealtalkError, match="no such file"):
        read_errata(DATA / "missing.json")


def test_report_errata_scores_every_run_against_the_corrected_golds_and_never_reads_them_from_a_run(tmp_path: Path):
    fake = FakeLLM(reply=reply)
    with serve_llm(fake) as url:
        assert probe(url, tmp_path / "fixed", "--judge-model", "judge-model", "--errata", str(ERRATA)).exit_code == 0
        assert probe(url, tmp_path / "plain", "--judge-model", "judge-model").exit_code == 0
    # a crafted column in a run file is never shown as the errata score
    path = tmp_path / "plain" / "predictions.jsonl"
    path.write_text(
        "".join(json.dumps({**json.loads(line), "f1_errata": 0.99}) + "\n" for line in path.read_text().splitlines())
    )
    runs = [str(tmp_path / "fixed"), str(tmp_path / "plain")]
    plain = runner.invoke(app, ["report", *runs, "-o", str(tmp_path / "r0"), "--json"])
    assert plain.exit_code == 0 and "f1_errata" not in json.loads(plain.stdout)["metrics"]
    result = runner.invoke(app, ["report", *runs, "-o", str(tmp_path / "r1"), "--errata", str(ERRATA), "--json"])
    assert result.exit_code == 0, result.output
    board = json.loads(result.stdout)
    assert list(board["metrics"])[:5] == ["f1", "f1_date_normalised", "judge_score", "f1_errata", "judge_score_errata"]
    a, b = board["runs"]
    assert a["scores"]["f1_errata"]["overall"]["mean"] == b["scores"]["f1_errata"]["overall"]["mean"]
    assert a["scores"]["f1_errata"]["overall"]["mean"] > a["scores"]["f1"]["overall"]["mean"]
    # run A recorded verdicts against the corrected golds; B did not: its judge column is left out, not averaged
    assert a["scores"]["judge_score_errata"]["overall"]["mean"] > a["scores"]["judge_score"]["overall"]["mean"]
    assert b["scores"]["judge_score_errata"]["overall"]["mean"] is None
    section = board["errata"]
    assert section["runs"]["A"]["judge_missing"] == 0 and section["runs"]["B"]["judge_missing"] == 3
    assert {c["id"] for c in section["changed"]} == {
        "realtalk_Chat_S_Ana_Ben_qa2",
        "realtalk_Chat_S_Ana_Ben_qa5",
        "locomo_1_qa0",
    }
    assert section["counts"]["not-found"] == 5 and section["runs"]["A"]["ceiling"]["overall"]["ceiling"] == 0.625
    md = (tmp_path / "r1" / "leaderboard.md").read_text()
    assert "## Errata" in md and "B: 3 items changed" in md and "lack a verdict against the corrected gold" in md
    html = (tmp_path / "r1" / "report.html").read_text()
    assert '"corrected":{"id":"realtalk_Chat_S_Ana_Ben_qa2","gold":"08 March, 2024"}' in html


def test_report_with_a_malformed_errata_file_is_exit_2_and_writes_nothing(tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    fake = FakeLLM(reply=reply)
    with serve_llm(fake) as url:
        assert probe(url, tmp_path / "run").exit_code == 0
    result = runner.invoke(app, ["report", str(tmp_path / "run"), "-o", str(tmp_path / "r"), "--errata", str(bad)])
    assert result.exit_code == 2 and "expected a JSON list" in result.output and not (tmp_path / "r").exists()


def test_a_dry_run_counts_the_judge_requests_for_corrected_golds(tmp_path: Path):
    with serve_llm(FakeLLM(reply=reply)) as url:
        plain = probe(url, tmp_path / "run", "--judge-model", "judge-model", "--dry-run", "--json")
        fixed = probe(
            url, tmp_path / "run", "--judge-model", "judge-model", "--dry-run", "--json", "--errata", str(ERRATA)
        )
    assert json.loads(fixed.stdout)["judge"]["requests"] == json.loads(plain.stdout)["judge"]["requests"] + 3
    assert not (tmp_path / "run").exists()


def test_questions_a_limited_run_did_not_ask_are_counted_apart_and_change_nothing(tmp_path: Path):
    with serve_llm(FakeLLM(reply=reply)) as url:
        result = probe(url, tmp_path / "run", "--limit", "3", "--errata", str(ERRATA), "--json")
    assert result.exit_code == 0, result.output
    section = json.loads(result.stdout)["errata"]
    # the first 3 items are Chat_S_Ana_Ben qa0-qa2: qa2 applied, qa5 and the LoCoMo chat's entries not asked
    assert section["counts"] == {"applied": 1, "evidence-only": 0, "not-asked": 3, "outside": 2, "not-found": 5}
    assert [c["id"] for c in section["changed"]] == ["realtalk_Chat_S_Ana_Ben_qa2"]
    assert section["ceiling"]["overall"] == {"asked": 3, "corrected": 1, "ceiling": round(2 / 3, 4)}


def test_a_hand_edited_verdict_against_a_corrected_gold_is_not_taken(tmp_path: Path):
    with serve_llm(FakeLLM(reply=reply)) as url:
        assert probe(url, tmp_path / "run", "--judge-model", "judge-model", "--errata", str(ERRATA)).exit_code == 0
    path = tmp_path / "run" / "predictions.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        if "erratum" in r:
            r["erratum"]["judge_score"] = 5.0
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = runner.invoke(
        app, ["report", str(tmp_path / "run"), "-o", str(tmp_path / "r"), "--errata", str(ERRATA), "--json"]
    )
    assert result.exit_code == 0, result.output
    board = json.loads(result.stdout)
    assert "judge_score_errata" not in board["metrics"]  # no run has a verdict to show
    assert board["errata"]["runs"]["A"]["judge_missing"] == 3
