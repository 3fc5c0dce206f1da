"""Loading the benchmarks from their distributed formats, and one-line errors for bad inputs."""

import eval_fixtures as fx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from inf_llava.errors import DataError, ImageError
from inf_llava.eval import get_benchmark
from inf_llava.eval.data import load_eval_data
from inf_llava.eval.formats import LazyCell


def _pixels(image):
    return np.asarray(image.convert("RGB")).tolist()


def _same(image, reference):
    """Equal up to JPEG loss (the fixtures save JPEGs at quality 100): random images differ by ~85 on average."""
    a, b = np.asarray(image.convert("RGB"), dtype=float), np.asarray(reference.convert("RGB"), dtype=float)
    return a.shape == b.shape and np.abs(a - b).mean() < 8


def test_mmbench_tsv_copies_share_the_main_image(tmp_path):
    path = fx.write_mmbench_tsv(tmp_path)
    data = load_eval_data(get_benchmark("mmbench_en"), path)
    keys = [s.key for s in data.samples]
    assert keys[:4] == ["0", "1000000", "2000000", "1"] and len(keys) == 9
    main, copy = data.samples[0], data.samples[1]
    assert main.doc["index"] == 0 and copy.doc["index"] == 1_000_000 and main.doc["hint"] is None
    assert copy.doc["D"] is None and copy.doc["answer"] == "C"
    assert _pixels(main.images()[0]) == _pixels(copy.images()[0])
    assert data.samples[0].images()[0].size == (30, 20)


def test_hub_snapshot_folder_picks_config_and_split(tmp_path):
    folder = fx.write_mmbench_hub(tmp_path / "MMBench")
    en = load_eval_data(get_benchmark("mmbench_en"), folder)
    cn = load_eval_data(get_benchmark("mmbench_cn"), folder)
    assert len(en.samples) == len(cn.samples) == 9
    assert _pixels(en.samples[0].images()[0]) == _pixels(fx.image(0))
    assert _pixels(cn.samples[0].images()[0]) == _pixels(fx.image(10))
    test = load_eval_data(get_benchmark("mmbench_en"), folder, split="test")
    assert len(test.samples) == 2 and test.samples[0].doc["answer"] is None
    with pytest.raises(DataError, match="no file for split 'val'"):
        load_eval_data(get_benchmark("mmbench_en"), folder, split="val")


def test_parquet_images_stay_lazy_until_needed(tmp_path):
    schema = pa.schema(
        [
            ("question", pa.string()),
            ("options", pa.list_(pa.string())),
            ("answer", pa.string()),
            ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        ]
    )
    rows = [{"question": f"q{i}", "options": ["a", "b"], "answer": "1", "image": {"bytes": fx.image_bytes(i)}}
            for i in range(5)]  # fmt: skip
    path = tmp_path / "test-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=2)
    data = load_eval_data(get_benchmark("ai2d"), path)
    assert isinstance(data.samples[3].doc["image"], LazyCell)
    assert [_pixels(s.images()[0]) for s in data.samples] == [_pixels(fx.image(i)) for i in range(5)]


def test_arrow_save_to_disk_and_single_file(tmp_path):
    folder = fx.write_okvqa_saved(tmp_path / "okvqa")
    data = load_eval_data(get_benchmark("okvqa"), folder)
    assert [s.key for s in data.samples] == ["501", "502", "503"]
    assert data.samples[1].doc["answers"][0] == "umbrella"
    arrow_file = next(folder.glob("*.arrow"))
    single = load_eval_data(get_benchmark("okvqa"), arrow_file)
    assert _pixels(single.samples[2].images()[0]) == _pixels(fx.image(5003))


def test_seed_official_json_skips_video_with_a_note(tmp_path):
    path = fx.write_seed_official(tmp_path)
    data = load_eval_data(get_benchmark("seedbench"), path)
    assert [s.key for s in data.samples] == ["100", "101", "102"]
    assert data.notes == ["skipped 1 video question(s): SEED-Bench (image) scores data_type == 'image' rows only"]
    assert _same(data.samples[1].images()[0], fx.image(21))
    hub = load_eval_data(get_benchmark("seedbench"), fx.write_seed_hub(tmp_path / "hub"))
    assert len(hub.samples) == 3 and len(hub.samples[0].images()) == 1


def test_scienceqa_problems_json(tmp_path):
    fx.write_sqa_official(tmp_path)
    data = load_eval_data(get_benchmark("scienceqa_img"), tmp_path)
    assert [s.key for s in data.samples] == ["10", "11"]  # 12 has no image, 13 is train
    assert any("without an image" in note for note in data.notes)
    assert _pixels(data.samples[1].images()[0]) == _pixels(fx.image(51))
    train = load_eval_data(get_benchmark("scienceqa_img"), tmp_path / "problems.json", split="train")
    assert [s.key for s in train.samples] == ["13"]


def test_okvqa_official_files(tmp_path):
    fx.write_okvqa_official(tmp_path)
    for name in ("OpenEnded_mscoco_train2014_questions.json", "mscoco_train2014_annotations.json"):
        (tmp_path / name).write_text('{"data_subtype": "train2014", "questions": [], "annotations": []}')
    for data_arg in (tmp_path, tmp_path / "OpenEnded_mscoco_val2014_questions.json"):
        data = load_eval_data(get_benchmark("okvqa"), data_arg)
        doc = data.samples[0].doc
        assert doc["question"] == "What sport is this?" and doc["answers"][0]["answer"] == "tennis"
        assert len(doc["answers"]) == 10
        assert _same(data.samples[2].images()[0], fx.image(5003))


def test_llava_bench_official_folder(tmp_path):
    fx.write_llava_official(tmp_path)
    data = load_eval_data(get_benchmark("llava_bench_wild"), tmp_path)
    doc = data.samples[2].doc
    assert doc["text"] == "Why might the man be smiling?" and doc["caption"] == "A man smiling in the sun."
    assert doc["gpt_answer"] == "He seems to enjoy the sunny day." and doc["category"] == "complex"
    assert _same(data.samples[1].images()[0], fx.image(60))


def test_mmmu_parquet_images_in_prompt_order(tmp_path):
    data = load_eval_data(get_benchmark("mmmu_val"), fx.write_mmmu_hub(tmp_path))
    second = data.samples[1]
    assert second.doc["image_3"] is None
    assert [_pixels(i) for i in second.images()] == [_pixels(fx.image(61)), _pixels(fx.image(62))]


def test_limit_and_image_root(tmp_path):
    path = fx.write_seed_official(tmp_path / "seed")
    data = load_eval_data(get_benchmark("seedbench"), path, limit=2)
    assert len(data.samples) == 2 and "--limit 2: evaluating the first 2 of 3 samples" in data.notes
    moved = tmp_path / "elsewhere"
    (tmp_path / "seed" / "SEED-Bench-image").rename(moved)
    with pytest.raises(ImageError, match=r"SEED-Bench.json questions\[0\]: image"):
        load_eval_data(get_benchmark("seedbench"), path).samples[0].images()
    relocated = load_eval_data(get_benchmark("seedbench"), path, image_root=moved)
    assert relocated.samples[0].images()[0].size == (30, 20)


ROW = '{"question_id": 1, "question": "q", "answers": []}\n'
BAD_INPUTS = [
    # (file name, content, error type, message pattern, whether the error comes when opening the images)
    ("nope.jsonl", None, DataError, r"nope.jsonl: no such file or directory", False),
    ("bad.jsonl", ROW + '{"question": \n', DataError, r"bad.jsonl line 2: invalid JSON", False),
    ("missing.jsonl", '{"question_id": 1, "question": "q"}\n', DataError, r"line 1: missing field 'answers'", False),
    ("dup.jsonl", ROW * 2, DataError, r"dup.jsonl line 2: duplicate id '1' \(first at .*dup.jsonl line 1\)", False),
    ("mixed.jsonl", ROW + '{"question": "q", "answers": []}\n', DataError, r"line 2: no 'question_id'", False),
    ("data.txt", "x", DataError, "unsupported file type", False),
    (
        "gone.jsonl",
        ROW[:-2] + ', "image": "gone.jpg"}\n',
        ImageError,
        r"line 1: image 'gone.jpg' is neither a file",
        True,
    ),
    (
        "bad_image.jsonl",
        ROW[:-2] + ', "image": "c.jpg"}\n',
        ImageError,
        r"line 1: image .*c.jpg: not a recognised",
        True,
    ),
]


@pytest.mark.parametrize("name, content, error, pattern, on_images", BAD_INPUTS)
def test_bad_inputs_give_one_line_errors(tmp_path, name, content, error, pattern, on_images):
    (tmp_path / "c.jpg").write_bytes(b"not a jpeg")
    if content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(error, match=pattern) as info:
        data = load_eval_data(get_benchmark("okvqa"), tmp_path / name)
        if on_images:
            data.samples[0].images()
    assert "\n" not in str(info.value)


def test_limit_must_be_positive(tmp_path):
    (tmp_path / "d.jsonl").write_text(ROW)
    with pytest.raises(ValueError, match="--limit must be >= 1"):
        load_eval_data(get_benchmark("okvqa"), tmp_path / "d.jsonl", limit=0)


def test_tsv_dangling_image_reference(tmp_path):
    import pandas as pd

    base = {"question": "q", "A": "x", "B": "y", "answer": "A", "category": "c"}
    path = tmp_path / "refs.tsv"
    pd.DataFrame([{**base, "index": 1_000_000, "image": "0"}]).to_csv(path, sep="\t", index=False)
    with pytest.raises(DataError, match=r"refs.tsv row 1: image refers to index 0, which is not in the file"):
        load_eval_data(get_benchmark("mmbench_en"), path)
    rows = [{**base, "index": 0, "image": "5"}, {**base, "index": 5, "image": "0"}]
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    with pytest.raises(DataError, match=r"refs.tsv row 1: image refers to index 5 which holds no image"):
        load_eval_data(get_benchmark("mmbench_en"), path)


def test_hub_offline_is_one_line_error():
    """The test session runs with HF_HUB_OFFLINE=1 (tests/conftest.py): the real hub path fails, in one line."""
    with pytest.raises(
        DataError, match=r"^cannot load lmms-lab/ai2d \(config None, split test\) from the hub: "
    ) as info:
        load_eval_data(get_benchmark("ai2d"), "lmms-lab/ai2d")
    assert "\n" not in str(info.value)


def test_short_base64_image_longer_than_a_file_name(tmp_path):
    """A small PNG in base64 (over NAME_MAX = 255 characters, under the 1024 looked up as file names) decodes."""
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(buffer, "PNG")
    encoded = base64.b64encode(buffer.getvalue() + b"\0" * 200).decode()  # PNG ignores trailing bytes
    assert 255 < len(encoded) < 1024
    path = tmp_path / "MMBench_DEV_EN.tsv"
    path.write_text("index\tquestion\tA\tB\tanswer\timage\n0\tq?\tx\ty\tA\t" + encoded + "\n")
    image = load_eval_data(get_benchmark("mmbench_en"), path).samples[0].images()[0]
    assert image.size == (8, 8) and image.getpixel((0, 0)) == (10, 200, 30)
