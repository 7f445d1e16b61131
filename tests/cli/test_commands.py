"""The management commands of `aimi` (models, deployments, keys, usage) on a data dir, through
click's runner, on SQLite (`--data-dir`) and on PostgreSQL (`--database-url`)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from aimi.cli.main import main
from aimi.db.database import Database
from aimi.platform.keys import KeyStore
from aimi.platform.usage import UsageEntry, UsageLedger

SMOLLM2 = "SmolLM2-135M-Instruct"
MODELS = [
    SMOLLM2,
    "Mistral-Large",
    "Mistral-Small",
    "Mixtral-8x7B-Instruct-v01",
    "Mixtral-8x7B-v01",
    "Mistral-7B-Instruct-v01",
    "Mistral-7B-v01",
]
KEY_LINE = re.compile(r"^(primary|secondary) key:\s+(\S{32})$", re.MULTILINE)

Aimi = Callable[..., Result]


@pytest.fixture(autouse=True)
def no_aimi_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands read AIMI_* like `aimi serve` does; the tests say everything on the command line."""
    import os

    for name in [n for n in os.environ if n.startswith("AIMI_") and not n.startswith("AIMI_TEST_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def aimi(backend: str, database_url: str, tmp_path: Path) -> Aimi:
    """Runs `aimi ARGS --data-dir tmp_path` (plus `--database-url` on PostgreSQL)."""
    where = ["--data-dir", str(tmp_path)]
    if backend == "postgresql":
        where += ["--database-url", database_url]

    def run(*args: str, ok: bool = True, input: str | None = None) -> Result:
        result = CliRunner().invoke(main, [*args, *where], input=input)
        if ok:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code == 1, result.output
        return result

    return run


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """The database the commands work on (opened after them: they migrate it)."""
    db = Database(database_url)
    yield db
    db.close()


def created_keys(result: Result) -> dict[str, str]:
    return dict(KEY_LINE.findall(result.output))


def rows(output: str) -> list[list[str]]:
    """The cells of each body row of a table."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in output.splitlines()
        if line.lstrip().startswith("│")
    ]


def row(output: str, *leading: str) -> list[str]:
    """The one row that starts with these cells."""
    found = [r for r in rows(output) if r[: len(leading)] == list(leading)]
    assert len(found) == 1, f"{leading} in:\n{output}"
    return found[0]


# -- models --------------------------------------------------------------------------------------


def test_models_list_shows_the_catalog_with_prices_and_what_needs_a_source(aimi: Aimi) -> None:
    output = aimi("models", "list").output
    assert sorted(r[0] for r in rows(output)) == sorted(MODELS)
    large = row(output, "Mistral-Large")
    assert large[1:6] == ["MistralAI", "chat-completions", "32768", "yes", "yes"]
    assert large[6:] == ["0.004000", "0.012000", "(needs a source)"]
    assert row(output, SMOLLM2)[-1] == "embedded"


def test_models_show_gives_one_entry_with_its_terms(aimi: Aimi) -> None:
    output = aimi("models", "show", "Mistral-Large").output
    assert re.search(r"^provider:\s+MistralAI$", output, re.MULTILINE)
    assert re.search(r"^context length:\s+32768$", output, re.MULTILINE)
    assert re.search(r"^price per 1K input tokens:\s+\$0\.004", output, re.MULTILINE)
    assert re.search(r"^price per 1K output tokens:\s+\$0\.012", output, re.MULTILINE)
    assert "(none: give one when deploying)" in output
    assert "Mistral AI commercial terms" in output
    assert "'tools': True" in output


def test_models_show_of_an_unknown_model_fails_with_a_message(aimi: Aimi) -> None:
    assert "There is no model 'GPT-5' in the catalog." in aimi("models", "show", "GPT-5", ok=False).output


def test_models_add_puts_a_model_in_the_catalog_once(aimi: Aimi) -> None:
    result = aimi("models", "add", "My-Model", "--provider", "me", "--context-length", "2048",
                  "--price-input", "0.5", "--price-output", "1.25", "--terms", "Be nice.", "--tools",
                  "--source", "http://10.0.0.7:8080")  # fmt: skip
    assert result.output.strip() == "added My-Model"
    shown = aimi("models", "show", "My-Model").output
    assert re.search(r"^provider:\s+me$", shown, re.MULTILINE)
    assert "$0.5" in shown and "$1.25" in shown and "Be nice." in shown and "'tools': True" in shown
    assert "http://10.0.0.7:8080" in shown
    again = aimi("models", "add", "My-Model", "--provider", "me", "--context-length", "2048", ok=False)
    assert "already has a model named 'My-Model'" in again.output


def test_models_add_refuses_a_negative_price(aimi: Aimi) -> None:
    result = aimi("models", "add", "Bad", "--provider", "me", "--context-length", "2048",
                  "--price-input", "-1", ok=False)  # fmt: skip
    assert "Prices cannot be negative." in result.output


# -- deployments ---------------------------------------------------------------------------------


def test_deployments_create_prints_the_endpoint_the_terms_and_both_keys_once(aimi: Aimi) -> None:
    result = aimi("deployments", "create", "--project", "research", "--model", SMOLLM2, "--name", "smol",
                  "--base-url", "http://gpu-box:8000/")  # fmt: skip
    output = result.output
    assert "Project 'research' is now subscribed to 'SmolLM2-135M-Instruct'. Terms accepted:" in output
    assert "Apache License 2.0" in output
    assert re.search(
        r"^deployment:\s+smol \(SmolLM2-135M-Instruct in project research\)$", output, re.MULTILINE
    )
    assert re.search(r"^endpoint:\s+http://gpu-box:8000/deployments/smol$", output, re.MULTILINE)
    keys = created_keys(result)
    assert set(keys) == {"primary", "secondary"} and keys["primary"] != keys["secondary"]


def test_the_keys_deployments_create_prints_open_the_deployment(aimi: Aimi, database: Database) -> None:
    keys = created_keys(aimi("deployments", "create", "--project", "p", "--model", SMOLLM2, "--name", "smol"))
    store = KeyStore(database)
    assert {store.lookup(k).deployment_name for k in keys.values()} == {"smol"}  # type: ignore[union-attr]


def test_a_second_deployment_of_an_offer_in_a_project_accepts_no_terms_again(aimi: Aimi) -> None:
    aimi("deployments", "create", "--project", "p", "--model", SMOLLM2, "--name", "one")
    aimi("deployments", "delete", "one", "--yes")
    again = aimi("deployments", "create", "--project", "p", "--model", SMOLLM2, "--name", "two").output
    assert "Terms accepted" not in again
    other = aimi("deployments", "create", "--project", "q", "--model", SMOLLM2, "--name", "three").output
    assert "Project 'q' is now subscribed" in other


def test_deployments_create_with_quotas(aimi: Aimi) -> None:
    aimi("deployments", "create", "--project", "p", "--model", SMOLLM2, "--name", "slow",
         "--requests-per-minute", "3", "--tokens-per-minute", "500")  # fmt: skip
    output = aimi("deployments", "show", "slow").output
    assert re.search(r"^requests/min:\s+3$", output, re.MULTILINE)
    assert re.search(r"^tokens/min:\s+500$", output, re.MULTILINE)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--project", "default", "--name", "twin"], "one deployment per model per project"),
        (["--project", "q", "--name", "smol"], "names are unique"),
        (["--project", "q", "--name", "large", "--model", "Mistral-Large"], "give a source"),
        (
            ["--project", "q", "--name", "large", "--model", "Mistral-Large", "--source", "nope.gguf"],
            "neither a file on this machine nor an http(s) URL",
        ),
        (["--project", "q", "--name", "Bad_Name"], "Invalid deployment name 'Bad_Name'"),
        (["--project", "q", "--name", "gpt", "--model", "GPT-5"], "no model 'GPT-5'"),
    ],
    ids=["same-model-same-project", "taken-name", "no-source", "bad-source", "bad-name", "unknown-model"],
)
def test_deployments_create_refuses_what_breaks_a_rule_with_a_clear_error(
    aimi: Aimi, args: list[str], message: str
) -> None:
    aimi("deployments", "create", "--project", "default", "--model", SMOLLM2, "--name", "smol")
    if "--model" not in args:
        args = [*args, "--model", SMOLLM2]
    result = aimi("deployments", "create", *args, ok=False)
    assert message in result.output
    assert result.output.startswith("Error: ")


def test_a_model_without_weights_here_deploys_from_a_gguf_file_or_an_upstream_url(
    aimi: Aimi, tmp_path: Path
) -> None:
    gguf = tmp_path / "large.gguf"
    gguf.write_bytes(b"GGUF" + bytes(60))
    aimi("deployments", "create", "--project", "p", "--model", "Mistral-Large", "--name", "large",
         "--source", str(gguf))  # fmt: skip
    aimi("deployments", "create", "--project", "p", "--model", "Mistral-Small", "--name", "small",
         "--source", "https://mistral.example.com")  # fmt: skip
    output = aimi("deployments", "list").output
    assert row(output, "large")[3] == str(gguf.resolve())
    assert row(output, "small")[3] == "https://mistral.example.com"


def test_deployments_list_shows_every_deployment_or_one_projects(aimi: Aimi) -> None:
    aimi("deployments", "create", "--project", "research", "--model", SMOLLM2, "--name", "smol")
    aimi("deployments", "create", "--project", "prod", "--model", SMOLLM2, "--name", "smol-prod",
         "--requests-per-minute", "5")  # fmt: skip
    output = aimi("deployments", "list").output
    assert row(output, "smol")[:6] == ["smol", "research", SMOLLM2, "embedded", "1000", "200000"]
    assert row(output, "smol-prod")[:5] == ["smol-prod", "prod", SMOLLM2, "embedded", "5"]
    only = aimi("deployments", "list", "--project", "prod").output
    assert "smol-prod" in only and "research" not in only


def test_deployments_show_gives_the_key_hints_never_the_keys(aimi: Aimi) -> None:
    keys = created_keys(aimi("deployments", "create", "--project", "p", "--model", SMOLLM2, "--name", "smol"))
    output = aimi("deployments", "show", "smol").output
    assert re.search(r"^project:\s+p$", output, re.MULTILINE)
    for which, key in keys.items():
        assert re.search(rf"^{which} key:\s+…{key[-4:]} \(since ", output, re.MULTILINE)
        assert key not in output


def test_deployments_delete_asks_then_deletes_the_deployment_and_its_keys(
    aimi: Aimi, database: Database
) -> None:
    keys = created_keys(aimi("deployments", "create", "--project", "p", "--model", SMOLLM2, "--name", "smol"))
    kept = aimi("deployments", "delete", "smol", input="n\n", ok=False)
    assert "Aborted" in kept.output
    assert "smol" in aimi("deployments", "list").output
    assert aimi("deployments", "delete", "smol", input="y\n").output.strip().endswith("deleted smol")
    assert "not found" in aimi("deployments", "show", "smol", ok=False).output
    assert all(KeyStore(database).lookup(k) is None for k in keys.values())
    assert "not found" in aimi("deployments", "delete", "smol", "--yes", ok=False).output


# -- keys ----------------------------------------------------------------------------------------


def test_keys_show_lists_both_keys_by_their_last_characters(aimi: Aimi) -> None:
    keys = created_keys(aimi("deployments", "create", "--project", "p", "--model", SMOLLM2, "--name", "smol"))
    lines = aimi("keys", "show", "--deployment", "smol").output.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["primary", f"…{keys['primary'][-4:]}"],
        ["secondary", f"…{keys['secondary'][-4:]}"],
    ]


@pytest.mark.parametrize("which", ["primary", "secondary"])
def test_keys_regenerate_replaces_one_key_and_leaves_the_other_working(
    aimi: Aimi, database: Database, which: str
) -> None:
    keys = created_keys(aimi("deployments", "create", "--project", "p", "--model", SMOLLM2, "--name", "smol"))
    output = aimi("keys", "regenerate", "--deployment", "smol", "--which", which).output
    found = re.search(rf"^new {which} key for smol: (\S{{32}})$", output, re.MULTILINE)
    assert found is not None
    new = found.group(1)
    store = KeyStore(database)
    assert store.lookup(keys[which]) is None
    assert store.lookup(new).deployment_name == "smol"  # type: ignore[union-attr]
    other = "secondary" if which == "primary" else "primary"
    assert store.lookup(keys[other]).deployment_name == "smol"  # type: ignore[union-attr]
    assert f"…{new[-4:]}" in aimi("keys", "show", "--deployment", "smol").output


def test_keys_of_an_unknown_deployment_fail_with_a_message(aimi: Aimi) -> None:
    assert "'ghost' not found" in aimi("keys", "show", "--deployment", "ghost", ok=False).output
    result = aimi("keys", "regenerate", "--deployment", "ghost", "--which", "primary", ok=False)
    assert "'ghost' not found" in result.output


def test_keys_regenerate_takes_only_primary_or_secondary(aimi: Aimi) -> None:
    result = CliRunner().invoke(main, ["keys", "regenerate", "--deployment", "smol", "--which", "tertiary"])
    assert result.exit_code == 2
    assert "'tertiary' is not one of 'primary', 'secondary'" in result.output


# -- usage ---------------------------------------------------------------------------------------


def record(database: Database, deployment: str, prompt: int, completion: int) -> None:
    cost = (prompt * Decimal("0.004") + completion * Decimal("0.012")) / 1000
    UsageLedger(database).record(
        UsageEntry(deployment, "p", "Mistral-Large", 1, prompt, completion, "stop", 200, 50, False, cost)
    )


def test_usage_prints_a_line_per_deployment_and_the_totals_with_cost(aimi: Aimi, database: Database) -> None:
    aimi("models", "list")  # the commands create the schema
    record(database, "chat", 1000, 250)
    record(database, "chat", 31, 7)
    record(database, "code", 1, 0)
    output = aimi("usage").output
    assert row(output, "all", "chat")[2:] == ["2", "1031", "257", "1288", "0.007208"]
    assert row(output, "all", "code")[2:] == ["1", "1", "0", "1", "0.000004"]
    assert row(output, "", "(total)")[2:] == ["3", "1032", "257", "1289", "0.007212"]


def test_usage_for_one_deployment_by_day_since_a_moment(aimi: Aimi, database: Database) -> None:
    aimi("models", "list")
    record(database, "chat", 10, 5)
    record(database, "code", 7, 3)
    output = aimi("usage", "--deployment", "code", "--by", "day", "--since", "1h").output
    [line, total] = rows(output)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", line[0])
    assert line[1:] == ["code", "1", "7", "3", "10", "0.000064"]
    assert total == ["", "(total)", "1", "7", "3", "10", "0.000064"]
    future = aimi("usage", "--since", "2999-01-01").output
    assert rows(future) == [["", "(total)", "0", "0", "0", "0", "0.000000"]]


def test_usage_with_a_since_it_cannot_read_fails_with_a_message(aimi: Aimi) -> None:
    result = aimi("usage", "--since", "yesterday", ok=False)
    assert "'since' takes a date, a date-time or a span like 12h or 7d, not 'yesterday'." in result.output


# -- content safety ------------------------------------------------------------------------------


def test_deployments_safety_changes_only_what_its_flags_name_and_prints_the_policy(aimi: Aimi) -> None:
    aimi("deployments", "create", "--project", "p", "--model", SMOLLM2, "--name", "smol")
    aimi("deployments", "create", "--project", "p", "--model", "Mistral-Small", "--name", "judge",
         "--source", "http://upstream.test:8080")  # fmt: skip
    aimi("deployments", "safety", "smol", "--input", "hate=low", "--output", "violence=none",
         "--no-jailbreak", "--blocklist", "legal=lawsuit,court", "--judge", "judge")  # fmt: skip
    printed = json.loads(
        aimi("deployments", "safety", "smol", "--blocklist-pattern", r"legal=proj-\d+").output
    )
    assert printed == {
        "enabled": True,
        "input": {"hate": "low", "sexual": "medium", "violence": "medium", "self_harm": "medium"},
        "output": {"hate": "medium", "sexual": "medium", "violence": None, "self_harm": "medium"},
        "block_jailbreak": False,
        "blocklists": [{"name": "legal", "terms": ["lawsuit", "court"], "patterns": [r"proj-\d+"]}],
        "fail_closed": False,
        "judge": "judge",
    }
    cleared = json.loads(aimi("deployments", "safety", "smol", "--judge", "", "--off").output)
    assert "judge" not in cleared and cleared["enabled"] is False


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--input", "hate=extreme"], "Invalid value for 'input.hate'"),
        (["--input", "hate=safe"], "cannot be 'safe'"),
        (["--output", "gore=low"], "Unknown safety setting 'output.gore'"),
        (["--blocklist-pattern", "broken=(unclosed"], "invalid regular expression"),
        (["--judge", "smol"], "cannot be its own judge"),
        (["--judge", "nobody"], "no deployment named 'nobody'"),
    ],
    ids=["unknown-level", "safe", "unknown-category", "bad-regex", "own-judge", "unknown-judge"],
)
def test_deployments_safety_refuses_a_bad_policy_naming_the_setting(
    aimi: Aimi, flags: list[str], message: str
) -> None:
    aimi("deployments", "create", "--project", "p", "--model", SMOLLM2, "--name", "smol")
    before = aimi("deployments", "safety", "smol").output
    result = aimi("deployments", "safety", "smol", *flags, ok=False)
    assert result.output.startswith("Error: ") and message in result.output
    assert aimi("deployments", "safety", "smol").output == before  # nothing was stored
