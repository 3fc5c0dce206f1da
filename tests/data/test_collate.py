import torch
import torch.nn.functional as F

from inf_llava.data import LlavaDataset, TrainingCollator, load_records
from inf_llava.data.dataset import InvalidExample
from inf_llava.data.llava_format import InvalidRecord
from inf_llava.data.toy import make_toy_dataset
from inf_llava.processing.tokenization import IGNORE_INDEX


def _dataset(tmp_path, processor, n=5):
    path = make_toy_dataset(tmp_path, n, kind="instruct", text_only_every=2, image_size=(30, 20))
    samples, _ = load_records(path, path.parent / "images")
    return LlavaDataset(samples, processor, "llama3")


def test_right_padding_labels_mask_and_pixels_in_order(tiny_processor, tmp_path):
    dataset = _dataset(tmp_path, tiny_processor)
    examples = [dataset[i] for i in range(4)]  # image, text-only, image, text-only
    batch = TrainingCollator(tiny_processor.pad_token_id)(examples)
    lengths = [len(e.input_ids) for e in examples]
    assert batch.input_ids.shape == (4, max(lengths))
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        assert torch.equal(batch.input_ids[row, :n], example.input_ids)
        assert (batch.input_ids[row, n:] == tiny_processor.pad_token_id).all()
        assert torch.equal(batch.labels[row, :n], example.labels)
        assert (batch.labels[row, n:] == IGNORE_INDEX).all()
        assert batch.attention_mask[row].tolist() == [1] * n + [0] * (batch.input_ids.shape[1] - n)
    assert torch.equal(batch.pixel_values, torch.cat([examples[0].pixel_values, examples[2].pixel_values]))
    assert batch.indices == [0, 1, 2, 3]
    assert batch.num_supervised == sum(int((e.labels[1:] != IGNORE_INDEX).sum()) for e in examples)


def test_padded_batch_gives_each_sample_its_own_loss(tiny_model, tiny_processor, tmp_path):
    """Right padding changes nothing for real tokens: the batch's summed token loss equals the per-sample sums."""
    dataset = _dataset(tmp_path, tiny_processor)
    collate = TrainingCollator(tiny_processor.pad_token_id)
    examples = [dataset[i] for i in range(4)]

    def summed_loss(batch):
        logits = tiny_model(**{k: v for k, v in batch.model_inputs("cpu").items() if k != "labels"}).logits
        return F.cross_entropy(
            logits[:, :-1].flatten(0, 1), batch.labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        )

    with torch.no_grad():
        together = summed_loss(collate(examples))
        alone = sum(summed_loss(collate([e])) for e in examples)
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-4)


def test_text_only_batch_and_empty_batch(tiny_processor, tmp_path):
    dataset = _dataset(tmp_path, tiny_processor)
    collate = TrainingCollator(tiny_processor.pad_token_id)
    text_only = collate([dataset[1], dataset[3]])
    assert text_only.pixel_values is None and not text_only.empty
    record = InvalidRecord("f line 1", "x", "broken")
    empty = collate([InvalidExample(0, record)])
    assert empty.empty and empty.num_supervised == 0 and empty.invalid[0].record is record
