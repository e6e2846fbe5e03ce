"""Run identity and secret redaction: the two contracts cft imports from notify."""

from datetime import datetime

import pytest

from notify.redact import StreamRedactor, redact, secret_values
from notify.run_identity import InvalidRunId, resolve_run_id, sanitize_run_id

NOW = datetime(2026, 1, 2, 3, 4, 5)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("run-1.a_b", "run-1.a_b"),
        ("sky-2026-01-02 03:04:05_my cluster/1", "sky-2026-01-02-03-04-05_my-cluster-1"),
        ("a/b\\c:d*é", "a-b-c-d--"),
    ],
)
def test_sanitize_run_id(raw, clean):
    assert sanitize_run_id(raw) == clean


@pytest.mark.parametrize(
    ("explicit", "env", "expected"),
    [
        ("cli-id", {"RUN_ID": "env", "SKYPILOT_TASK_ID": "sky"}, "cli-id"),
        (None, {"RUN_ID": "from-env", "SKYPILOT_TASK_ID": "sky"}, "from-env"),
        (None, {"SKYPILOT_TASK_ID": "sky-2026_train_3"}, "sky-2026_train_3"),
        (None, {"SKYPILOT_TASK_ID": "sky-managed-2026-01-02-03-04-05-123456_cft-pipeline_7-0"},
         "sky-managed-2026-01-02-03-04-05-123456_cft-pipeline_7-0"),
        ("", {"RUN_ID": "  "}, "20260102-030405"),
        (None, {}, "20260102-030405"),
    ],
)
def test_resolve_run_id_order(explicit, env, expected):
    assert resolve_run_id(explicit, env=env, now=NOW) == expected


@pytest.mark.parametrize(
    ("explicit", "env", "source"),
    [
        ("..", {}, "--run-id"),
        (".", {}, "--run-id"),
        ("a/b", {}, "--run-id"),
        ("cli id", {}, "--run-id"),
        (".hidden", {}, "--run-id"),
        ("x" * 129, {}, "--run-id"),
        (None, {"RUN_ID": "../../etc"}, "RUN_ID"),
        (None, {"SKYPILOT_TASK_ID": "sky/1"}, "SKYPILOT_TASK_ID"),
    ],
)
def test_unsafe_run_ids_are_refused_not_rewritten(explicit, env, source):
    with pytest.raises(InvalidRunId, match=f"^{source} .* is not a valid run id"):
        resolve_run_id(explicit, env=env, now=NOW)


def test_resolve_run_id_defaults_to_a_timestamp_now():
    assert len(resolve_run_id(env={})) == len("YYYYmmdd-HHMMSS")


def test_secret_values_by_name_longest_first():
    env = {
        "HF_TOKEN": "hf_abcdef",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "DB_PASSWORD": "hunter22",
        "SMTP_PASSWD": "passwd!",
        "GOOGLE_APPLICATION_CREDENTIALS": "/secrets/gcp.json",
        "wandb_api_key": "lowercase-name",
        "SHORT_TOKEN": "abc",  # under 4 chars: would shred ordinary text
        "PATH": "/usr/bin",
        "RUN_ID": "run-1",
    }
    values = secret_values(env)
    assert set(values) == {
        "hf_abcdef", "wJalrXUtnFEMI/K7MDENG", "AKIAEXAMPLE", "hunter22", "passwd!", "/secrets/gcp.json",
        "lowercase-name",
    }
    assert [len(v) for v in values] == sorted((len(v) for v in values), reverse=True)


def test_redact_masks_every_occurrence_and_overlaps_whole():
    env = {"HF_TOKEN": "hf_abc", "OTHER_TOKEN": "hf_abc_longer", "PATH": "/bin"}
    text = "token hf_abc_longer and hf_abc twice hf_abc; path /bin"
    assert redact(text, env) == "token *** and *** twice ***; path /bin"


def test_redact_without_secrets_is_identity():
    assert redact("nothing [special] here.*", {"PATH": "/bin"}) == "nothing [special] here.*"


def test_redact_treats_secrets_literally():
    env = {"API_KEY": "a.b*c(d"}
    assert redact("x a.b*c(d y aXbbc(d", env) == "x *** y aXbbc(d"


def test_stream_redactor_handles_non_utf8_output():
    stream = StreamRedactor({"HF_TOKEN": "hf_secret"})
    assert stream.feed(b"\xff\xfe hf_secret \x00") + stream.flush() == b"\xff\xfe *** \x00"


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_stream_redactor_masks_secrets_split_across_pieces(size):
    """Fed in pieces of any size, the output equals redacting the whole text; overlapping secrets mask whole."""
    env = {"HF_TOKEN": "abcd", "AWS_SECRET_ACCESS_KEY": "abcdef", "NTFY_TOKEN": "xyzw", "API_KEY": "zwab"}
    text = b"1 abcdef 2 abcd 3 abc 4 xyzwab 5 zwab 6 ab"
    stream = StreamRedactor(env)
    out = b"".join(stream.feed(text[i:i + size]) for i in range(0, len(text), size)) + stream.flush()
    assert out == b"1 *** 2 *** 3 abc 4 ***ab 5 *** 6 ab"


def test_stream_redactor_does_not_hold_ordinary_text():
    stream = StreamRedactor({"HF_TOKEN": "hf_secret"})
    assert stream.feed(b"progress 10%\r") == b"progress 10%\r"
    assert stream.feed(b"prompt> h") == b"prompt> " and stream.feed(b"ello") == b"hello"


def test_settings_whose_names_look_secret_do_not_shred_text():
    """TOKENIZERS_PARALLELISM=false (set by most HF jobs) must not turn every `false` in a log or config into ***."""
    env = {"TOKENIZERS_PARALLELISM": "false", "USE_KEYRING": "true", "HF_TOKEN": "hf_real_secret"}
    assert redact("trust_remote_code: false, keyring true, hf_real_secret", env) == \
        "trust_remote_code: false, keyring true, ***"
