"""Training data: the LLaVA JSON / JSONL format, lazy encoding, collation and the resumable sample order."""

from .collate import TrainingBatch, TrainingCollator
from .dataset import Example, InvalidExample, LlavaDataset
from .llava_format import InvalidRecord, LlavaSample, RecordError, iter_records, load_records, parse_record
from .sampler import SamplingPlan, StepBatchSampler

__all__ = [
    "Example",
    "InvalidExample",
    "InvalidRecord",
    "LlavaDataset",
    "LlavaSample",
    "RecordError",
    "SamplingPlan",
    "StepBatchSampler",
    "TrainingBatch",
    "TrainingCollator",
    "iter_records",
    "load_records",
    "parse_record",
]
