import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inf_llava.data.llava_format import InvalidRecord, RecordError, iter_records, load_records, parse_record
from inf_llava.errors import DataError

GOOD = {
    "id": "s1",
    "image": "a.png",
    "conversations": [
        {"from": "human", "value": "<image>\nWhat is it?"},
        {"from": "gpt", "value": "A cat."},
        {"from": "human", "value": "Sure?"},
        {"from": "gpt", "value": "Yes."},
    ],
}


@pytest.fixture()
def folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"\x89PNG not really decoded at validation time")
    (images / "b.png").write_bytes(b"x")
    (images / "empty.png").write_bytes(b"")
    return images


def _jsonl(tmp_path, rows, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_valid_record_keeps_turns_images_and_location(tmp_path, folder):
    sample = parse_record(GOOD, "f line 3", folder)
    assert sample.sample_id == "s1" and sample.where == "f line 3"
    assert sample.images == (folder / "a.png",)
    assert [role for role, _ in sample.messages] == ["user", "assistant", "user", "assistant"]
    assert sample.label == "f line 3 (sample 's1')"
    assert sample.modality_length == 4 + 2 + 1 + 1  # whitespace words per turn, positive: it has an image
    text_only = {k: v for k, v in GOOD.items() if k != "image"}
    text_only["conversations"] = [{"from": "human", "value": "Hi there"}, {"from": "gpt", "value": "Hello"}]
    assert parse_record(text_only, "f line 1", None).modality_length == -3


BAD = [
    (
        {"id": "x", "conversations": [{"from": "human", "value": "<image>\nhi"}, {"from": "gpt", "value": "a"}]},
        "1 <image> placeholder(s)",
    ),
    ({**GOOD, "image": ["a.png", "b.png"]}, "2 image(s) but 1 <image> placeholder(s)"),
    ({**GOOD, "image": "missing.png"}, "image file not found: "),
    ({**GOOD, "image": "empty.png"}, "image file is empty (0 bytes)"),
    ({**GOOD, "image": 7}, "'image' must be a path or a list of paths, got int"),
    (
        {**GOOD, "conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "<image>"}]},
        "roles out of order: turn 0 is 'gpt', expected 'human'",
    ),
    (
        {
            **GOOD,
            "conversations": [
                {"from": "human", "value": "<image>"},
                {"from": "human", "value": "b"},
                {"from": "gpt", "value": "c"},
            ],
        },
        "roles out of order: turn 1 is 'human'",
    ),
    (
        {**GOOD, "conversations": [{"from": "human", "value": "<image>"}, {"from": "bot", "value": "a"}]},
        "turn 1: unknown role 'bot'",
    ),
    (
        {**GOOD, "conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": None}]},
        "turn 1: 'value' must be a string, got null",
    ),
    ({**GOOD, "conversations": [{"from": "human", "value": "<image>"}, {"value": "a"}]}, "turn 1 is missing 'from'"),
    ({**GOOD, "conversations": "hello"}, "'conversations' must be a list"),
    ({**GOOD, "conversations": []}, "'conversations' is empty"),
    ({"id": "x", "image": "a.png"}, "missing 'conversations'"),
    ({**GOOD, "conversations": [{"from": "human", "value": "<image>"}]}, "ends with a human turn"),
    (
        {**GOOD, "conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "<image> a"}]},
        "turn 1 (gpt) contains <image>",
    ),
    (
        {
            **GOOD,
            "conversations": [
                {"from": "human", "value": "<image>"},
                {"from": "gpt", "value": "a"},
                {"from": "system", "value": "s"},
            ],
        },
        "a system turn is only allowed first",
    ),
]


@pytest.mark.parametrize(("record", "problem"), BAD)
def test_invalid_records_name_file_line_sample_and_problem(tmp_path, folder, record, problem):
    path = _jsonl(tmp_path, [GOOD, record])
    with pytest.raises(RecordError) as info:
        load_records(path, folder)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path} line 2 (sample '{record['id']}'): ")
    assert problem in message


def test_wrong_id_type_and_non_object_rows(tmp_path, folder):
    path = _jsonl(tmp_path, [GOOD, {**GOOD, "id": True}, [1, 2], "{broken"])
    samples, invalid = load_records(path, folder, skip_invalid=True)
    assert [s.sample_id for s in samples] == ["s1"]
    assert [r.message for r in invalid] == [
        f"{path} line 2: 'id' must be a string or an integer, got bool",
        f"{path} line 3: expected a JSON object, got list",
        f"{path} line 4: invalid JSON (Expecting property name enclosed in double quotes at column 2)",
    ]


def test_skip_invalid_collects_every_bad_record_and_keeps_the_rest(tmp_path, folder):
    rows = [GOOD, {**GOOD, "id": "bad1", "image": "missing.png"}, {**GOOD, "id": 5}, {**GOOD, "id": "bad2", "image": 3}]
    path = _jsonl(tmp_path, rows)
    with pytest.raises(RecordError, match="bad1"):
        load_records(path, folder)
    samples, invalid = load_records(path, folder, skip_invalid=True)
    assert [s.sample_id for s in samples] == ["s1", "5"]
    assert [(r.where, r.sample_id) for r in invalid] == [(f"{path} line 2", "bad1"), (f"{path} line 4", "bad2")]
    assert isinstance(invalid[0], InvalidRecord) and "image file not found" in invalid[0].reason


def test_all_invalid_is_an_error(tmp_path, folder):
    path = _jsonl(tmp_path, [{**GOOD, "image": "missing.png"}])
    with pytest.raises(DataError, match="no valid samples; first problem: .*image file not found"):
        load_records(path, folder, skip_invalid=True)


def test_json_list_items_carry_line_numbers(tmp_path, folder):
    rows = [GOOD, {**GOOD, "id": "two"}, {**GOOD, "id": "three", "image": "missing.png"}]
    text = json.dumps(rows, indent=2)
    path = tmp_path / "data.json"
    path.write_text(text)
    starts = [number for number, line in enumerate(text.splitlines(), start=1) if line == "  {"]
    assert [where for where, _ in iter_records(path)] == [f"{path} line {n}" for n in starts]
    with pytest.raises(RecordError) as info:
        load_records(path, folder)
    assert str(info.value).startswith(f"{path} line {starts[2]} (sample 'three'): image file not found")


def test_format_is_sniffed_not_taken_from_the_name(tmp_path, folder):
    listed = tmp_path / "records.txt"
    listed.write_text(json.dumps([GOOD]))
    lined = tmp_path / "records.json"
    lined.write_text(json.dumps(GOOD) + "\n\n" + json.dumps({**GOOD, "id": "s2"}) + "\n")
    assert [s.sample_id for s in load_records(listed, folder)[0]] == ["s1"]
    assert [s.where for s in load_records(lined, folder)[0]] == [f"{lined} line 1", f"{lined} line 3"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "the data file is empty"),
        ('[{"id": 1,}]', "line 1: invalid JSON"),
        ("[" + json.dumps(GOOD) + "\n" + json.dumps(GOOD) + "]", "line 2: expected ',' or ']'"),
        ("[] trailing", "unexpected text after the closing ']'"),
    ],
)
def test_broken_json_files(tmp_path, folder, text, problem):
    path = tmp_path / "data.json"
    path.write_text(text)
    with pytest.raises(DataError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        load_records(path, folder)


def test_missing_and_undecodable_files(tmp_path, folder):
    with pytest.raises(DataError, match="no such data file"):
        load_records(tmp_path / "nope.json", folder)
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"id": "\xe9"}\n')
    with pytest.raises(DataError, match="not UTF-8"):
        load_records(path, folder)


def test_relative_image_needs_a_folder_and_absolute_paths_work(tmp_path, folder):
    path = _jsonl(tmp_path, [GOOD])
    with pytest.raises(RecordError, match="no image folder was given"):
        load_records(path, None)
    absolute = _jsonl(tmp_path, [{**GOOD, "image": str(folder / "a.png")}], "abs.jsonl")
    assert load_records(absolute, None)[0][0].images == (folder / "a.png",)


def test_plain_template_takes_one_caption_turn(tmp_path, folder):
    path = _jsonl(tmp_path, [GOOD])
    assert load_records(path, folder)[0]
    with pytest.raises(RecordError, match="plain .* one human turn and one gpt turn, got 4 turns"):
        load_records(path, folder, template="plain")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
turns = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "from": st.sampled_from(["human", "gpt", "system", "bot", ""]) | json_values,
            "value": st.lists(st.sampled_from(["<image>", "a", " ", "\n", "\x00", "é"]), max_size=8).map("".join)
            | json_values,
        },
    ),
    max_size=5,
)
records = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=5) | st.integers() | json_values,
        "image": st.sampled_from(["a.png", "missing.png", "", "\x00.png", "../a.png"])
        | st.lists(st.sampled_from(["a.png", "b.png"]), max_size=3)
        | json_values,
        "conversations": turns | json_values,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(row=records | json_values)
def test_any_record_is_either_valid_or_a_located_one_line_error(folder, row):
    try:
        sample = parse_record(row, "f line 9", folder)
    except RecordError as exc:
        assert str(exc).startswith("f line 9") and "\n" not in str(exc)
    else:
        assert len(sample.images) == sum(text.count("<image>") for _, text in sample.messages)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.lists(st.sampled_from(list('[]{},:"\n abc01') + ["<image>"]), max_size=60).map("".join))
def test_any_file_content_reads_or_fails_with_a_data_error(tmp_path, folder, text):
    path = tmp_path / "fuzz.jsonl"
    path.write_text(text)
    try:
        load_records(path, folder, skip_invalid=True)
    except DataError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)


def test_deeply_nested_json_is_an_error_not_a_crash(tmp_path, folder):
    path = tmp_path / "deep.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + "[" * 100_000 + "\n")
    samples, invalid = load_records(path, folder, skip_invalid=True)
    assert len(samples) == 1 and invalid[0].message == f"{path} line 2: invalid JSON (nested too deeply)"
    listed = tmp_path / "deep.json"
    listed.write_text("[" + "[" * 100_000)
    with pytest.raises(DataError, match="line 1: invalid JSON"):
        load_records(listed, folder)
