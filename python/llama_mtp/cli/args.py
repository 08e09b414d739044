"""Command-line options with llama-cli's names and meanings, shared by the subcommands."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ..sampling import SamplingParams, none_means_default, option_fields
from ..speculator import AUTO_N_MAX, SPEC_TYPES, Speculator
from ..tensor_placement import parse_override_tensor


def add_model_args(p: argparse.ArgumentParser, *, model_required: bool = True) -> None:
    """-m / -hf, -c, -b, -ub, -t, -tb, -ngl, -fa, -ctk, -ctv, --mlock, --no-mmap; devices and split;
    -ot, -cmoe, -ncmoe."""
    g = p.add_argument_group("model and context (llama-cli names)")
    g.add_argument("-m", "--model", default=None, help="GGUF model file (or -hf)")
    p.set_defaults(model_required=model_required)
    g.add_argument("-hf", "-hfr", "--hf-repo", dest="hf_repo", default=None, metavar="USER/REPO[:QUANT]",
                   help="load from the Hugging Face Hub (pip install 'llama-mtp[hub]'): the file whose name "
                        "contains QUANT (default Q4_K_M), every part of a split model")
    g.add_argument("-hff", "--hf-file", dest="hf_file", default=None,
                   help="with -hf: the file (or glob) to take, instead of QUANT")
    g.add_argument("-c", "--ctx-size", type=int, default=4096, help="context size in tokens (0 = from model)")
    g.add_argument("-b", "--batch-size", type=int, default=2048, help="logical batch size")
    g.add_argument("-ub", "--ubatch-size", type=int, default=512, help="physical batch size")
    g.add_argument("-t", "--threads", type=int, default=None, help="threads for generation")
    g.add_argument("-tb", "--threads-batch", type=int, default=None, help="threads for prompt batches")
    g.add_argument("-ngl", "--gpu-layers", "--n-gpu-layers", dest="gpu_layers", type=int, default=-1,
                   help="layers on the GPU (-1 or 999 = all)")
    g.add_argument("-fa", "--flash-attn", choices=("on", "off", "auto"), default="auto")
    g.add_argument("-ctk", "--cache-type-k", default="f16", help="KV cache type for K")
    g.add_argument("-ctv", "--cache-type-v", default="f16", help="KV cache type for V")
    g.add_argument("--mlock", action="store_true", help="lock the model in RAM")
    g.add_argument("--no-mmap", action="store_true", help="read the model instead of mapping it")
    g.add_argument("-nkvo", "--no-kv-offload", action="store_true", help="keep the KV cache off the GPU")
    g.add_argument("--no-warmup", action="store_true",
                   help="skip the throwaway decode at load (the first request then pays its costs)")
    g.add_argument("-np", "--parallel", dest="n_parallel", type=int, default=1,
                   help="sequence slots decoded together (continuous batching; -c is shared by them)")
    kvu = g.add_mutually_exclusive_group()
    kvu.add_argument("-kvu", "--kv-unified", dest="kv_unified", action="store_true", default=True,
                     help="one KV pool for all slots (default)")
    kvu.add_argument("-no-kvu", "--no-kv-unified", dest="kv_unified", action="store_false",
                     help="each slot gets -c / -np tokens of its own")
    add_device_args(p)
    add_tensor_placement_args(p.add_argument_group("weight placement (llama.cpp names)"))


def add_tensor_placement_args(g: argparse._ActionsContainer, *, draft: bool = False) -> None:
    """-ot/--override-tensor, -cmoe/--cpu-moe, -ncmoe/--n-cpu-moe (llama.cpp's names); with
    ``draft``, their forms for a separate draft model: -otd, -cmoed, -ncmoed (dest ``spec_*``)."""
    ot: tuple[str, ...]
    cmoe: tuple[str, ...]
    ncmoe: tuple[str, ...]
    if draft:
        ot = ("--spec-draft-override-tensor", "-otd", "--override-tensor-draft")
        cmoe = ("--spec-draft-cpu-moe", "-cmoed", "--cpu-moe-draft")
        ncmoe = ("--spec-draft-n-cpu-moe", "--spec-draft-ncmoe", "-ncmoed", "--n-cpu-moe-draft")
        dest, whose = "spec_", " of a separate draft model / MTP sidecar (-md)"
    else:
        ot, cmoe, ncmoe = ("-ot", "--override-tensor"), ("-cmoe", "--cpu-moe"), ("-ncmoe", "--n-cpu-moe")
        dest, whose = "", ""
    g.add_argument(*ot, dest=dest + "override_tensor", action="append", default=[], metavar="PATTERN=BUFFER,...",
                   help=f"tensors{whose} matching the regex PATTERN go to buffer type BUFFER (CPU, CUDA0, ...); "
                        "repeatable")
    g.add_argument(*cmoe, dest=dest + "cpu_moe", action="store_true",
                   help=f"keep all mixture-of-experts weights (ffn_*_exps){whose} in CPU memory")
    g.add_argument(*ncmoe, dest=dest + "n_cpu_moe", type=int, default=0, metavar="N",
                   help=f"keep the mixture-of-experts weights of the first N layers{whose} in CPU memory")


def tensor_placement_kwargs(a: argparse.Namespace, *, draft: bool = False) -> dict[str, object]:
    """The ``override_tensor`` / ``cpu_moe`` / ``n_cpu_moe`` arguments of :class:`llama_mtp.Model`
    (of :class:`llama_mtp.Speculator` with ``draft``) from parsed options."""
    dest = "spec_" if draft else ""
    values: list[str] = getattr(a, dest + "override_tensor")
    return dict(override_tensor=tuple(pair for text in values for pair in parse_override_tensor(text)),
                cpu_moe=getattr(a, dest + "cpu_moe"), n_cpu_moe=getattr(a, dest + "n_cpu_moe"))


def add_device_args(p: argparse.ArgumentParser) -> None:
    """-sm, -ts, -mg, --rpc, --list-devices (llama.cpp's names and meanings)."""
    g = p.add_argument_group("devices and split (llama.cpp names)")
    g.add_argument("-sm", "--split-mode", choices=("none", "layer", "row"), default="layer",
                   help="how to split the model over several devices: layer (default), row, none")
    g.add_argument("-ts", "--tensor-split", default=None, metavar="N0,N1,...",
                   help="share of the model per device, e.g. 3,1 (in the order of --list-devices)")
    g.add_argument("-mg", "--main-gpu", type=int, default=0, metavar="INDEX",
                   help="the device for the whole model with -sm none, for intermediate results with -sm row")
    g.add_argument("--rpc", default=None, metavar="HOST:PORT,...",
                   help="RPC servers (llama-mtp rpc-server / llama.cpp rpc-server) to put layers on")
    g.add_argument("--list-devices", action="store_true", help="print the devices (with --rpc's) and exit")


def parse_tensor_split(value: str | None) -> list[float] | None:
    """``-ts 3,1`` (or ``3/1``, as llama.cpp) -> ``[3.0, 1.0]``."""
    if not value:
        return None
    try:
        return [float(x) for x in re.split(r"[,/]+", value.strip()) if x]
    except ValueError:
        raise ValueError(f"-ts takes comma-separated numbers, e.g. 3,1; not {value!r}") from None


def rpc_servers_from(a: argparse.Namespace) -> list[str] | None:
    """``--rpc host:port,...`` -> the list."""
    value: str | None = getattr(a, "rpc", None)
    return [s.strip() for s in value.split(",") if s.strip()] if value else None


def print_devices(a: argparse.Namespace) -> int:
    """``--list-devices``: this machine's devices and those of the ``--rpc`` servers."""
    from .. import _core
    from ..system import system_info

    lines = [f"  {d.name}: {d.description} ({d.memory_total // 2**20} MiB, {d.memory_free // 2**20} MiB free)"
             for d in system_info().devices]
    for server in rpc_servers_from(a) or []:
        for d in _core.rpc_server_devices(server):
            lines.append(f"  {d['name']}: {d['description']} ({int(d['memory_total']) // 2**20} MiB, "
                         f"{int(d['memory_free']) // 2**20} MiB free)")
    print("Available devices:")
    print("\n".join(lines) if lines else "  (none)")
    return 0


def resolve_model(a: argparse.Namespace) -> None:
    """Fill ``a.model`` from ``-hf`` (downloading, or from the cache); check one of them is given."""
    if getattr(a, "hf_repo", None):
        if a.model:
            raise ValueError("give -m or -hf, not both")
        from ..hub import parse_hf_spec, resolve

        repo, pattern = parse_hf_spec(a.hf_repo)
        a.model = str(resolve(repo, a.hf_file or pattern))
    elif getattr(a, "hf_file", None):
        raise ValueError("-hff goes with -hf")
    if getattr(a, "model_required", False) and not a.model:
        raise ValueError("a model is needed: -m FILE.gguf or -hf USER/REPO[:QUANT]")


def add_sampling_args(p: argparse.ArgumentParser) -> None:
    """Every SamplingParams field that has llama-cli flags (``-n``, ``--temp``, ``--top-k`` ...),
    with the CLI's defaults (``-n -1``: no limit), plus ``--grammar-file``."""
    g = p.add_argument_group("sampling (llama-cli names)")
    defaults = SamplingParams()
    for f in option_fields():
        meta = f.metadata
        if not meta["flags"]:
            continue
        default = getattr(defaults, f.name)
        if f.name == "max_tokens":
            default = -1  # the CLI generates until the end (llama-cli's default)
        if f.name == "seed":
            default = -1
        if meta["kind"] is bool:
            g.add_argument(*meta["flags"], dest=f.name, action="store_true", help=meta["help"])
        elif meta["kind"] is list:
            g.add_argument(*meta["flags"], dest=f.name, action="append", default=[], help=meta["help"])
        else:
            g.add_argument(*meta["flags"], dest=f.name, type=meta["kind"], default=default, help=meta["help"])
    g.add_argument("--grammar-file", type=Path, default=None, help="file holding the GBNF grammar")


def add_spec_args(p: argparse.ArgumentParser) -> None:
    """--spec-type, --spec-draft-n-max/-n-min/-p-min/-ngl, -md."""
    g = p.add_argument_group("speculative decoding (llama.cpp names)")
    g.add_argument("--spec-type", choices=SPEC_TYPES, default="none",
                   help="speculator: draft-mtp uses the model's own MTP head")
    g.add_argument("--spec-draft-n-max", "--draft-max", dest="spec_n_max", default="3",
                   help="tokens drafted per step, or 'auto' (adaptive, chosen before every draft)")
    g.add_argument("--spec-draft-n-min", "--draft-min", dest="spec_n_min", type=int, default=0)
    g.add_argument("--spec-draft-p-min", "--draft-p-min", dest="spec_p_min", type=float, default=0.0)
    g.add_argument("--spec-draft-ngl", "-ngld", "--gpu-layers-draft", dest="spec_ngl", type=int, default=-1)
    g.add_argument("--spec-draft-device", "-devd", "--device-draft", dest="spec_devices", default=None,
                   metavar="DEV,...", help="devices of a separate draft model / MTP sidecar (none = CPU; "
                                          "default: the model's)")
    g.add_argument("--spec-draft-model", "-md", "--model-draft", dest="spec_model", default=None,
                   help="draft-simple: the draft GGUF; draft-mtp: an MTP sidecar GGUF")
    g.add_argument("-ctkd", "--cache-type-k-draft", dest="spec_ctk", default="f16",
                   help="KV cache type for K of a separate draft model")
    g.add_argument("-ctvd", "--cache-type-v-draft", dest="spec_ctv", default="f16",
                   help="KV cache type for V of a separate draft model")
    add_tensor_placement_args(g, draft=True)


def add_chat_args(p: argparse.ArgumentParser) -> None:
    """--jinja, -rea/--reasoning, --reasoning-budget, -sys, --chat-template(-file)."""
    g = p.add_argument_group("chat (llama-cli names)")
    g.add_argument("--jinja", action="store_true", help="treat the prompt as a user message and apply "
                   "the model's chat template")
    g.add_argument("-rea", "--reasoning", choices=("on", "off", "auto"), default="auto",
                   help="thinking on/off (auto: the template's default)")
    g.add_argument("--reasoning-budget", type=int, default=-1, help="max thinking tokens (-1 = unlimited)")
    g.add_argument("-sys", "--system-prompt", default=None)
    g.add_argument("--chat-template", default=None, help="jinja template overriding the GGUF's")
    g.add_argument("--chat-template-file", type=Path, default=None)


def add_generation_args(p: argparse.ArgumentParser) -> None:
    """Every option a generating subcommand takes (model, sampling, speculative, chat)."""
    add_model_args(p)
    add_sampling_args(p)
    add_spec_args(p)
    add_chat_args(p)


def model_kwargs(a: argparse.Namespace) -> dict[str, object]:
    """Keyword arguments of :class:`llama_mtp.Model` from parsed options."""
    return dict(n_gpu_layers=-1 if a.gpu_layers >= 999 else a.gpu_layers, n_ctx=a.ctx_size,
                n_batch=a.batch_size, n_ubatch=a.ubatch_size, n_threads=a.threads,
                n_threads_batch=a.threads_batch, flash_attn=a.flash_attn, cache_type_k=a.cache_type_k,
                cache_type_v=a.cache_type_v, use_mlock=a.mlock, use_mmap=not a.no_mmap,
                offload_kqv=not a.no_kv_offload, n_parallel=a.n_parallel, kv_unified=a.kv_unified,
                warmup=not a.no_warmup,
                main_gpu=a.main_gpu, split_mode=a.split_mode, tensor_split=parse_tensor_split(a.tensor_split),
                rpc_servers=rpc_servers_from(a), **tensor_placement_kwargs(a))


def sampling_from(a: argparse.Namespace) -> SamplingParams:
    """SamplingParams from parsed options (greedy when --temp 0, as llama.cpp)."""
    values = {f.name: none_means_default(f.name, getattr(a, f.name))
              for f in option_fields() if f.metadata["flags"]}
    values["temperature"] = max(0.0, values["temperature"])
    if a.grammar_file is not None:
        values["grammar"] = a.grammar_file.read_text(encoding="utf-8")
    return SamplingParams(**values)


def speculator_from(a: argparse.Namespace) -> Speculator:
    """Speculator from --spec-* options."""
    if a.spec_type == "none":
        return Speculator.none()
    n_max, adaptive = (AUTO_N_MAX, True) if a.spec_n_max == "auto" else (int(a.spec_n_max), False)
    devices = tuple(d for d in re.split(r"[,/]+", a.spec_devices or "") if d)
    return Speculator(a.spec_type, n_max=n_max, adaptive=adaptive, n_min=a.spec_n_min, p_min=a.spec_p_min,
                      gpu_layers=-1 if a.spec_ngl >= 999 else a.spec_ngl, model_path=a.spec_model,
                      cache_type_k=a.spec_ctk, cache_type_v=a.spec_ctv, devices=devices,
                      **tensor_placement_kwargs(a, draft=True))  # type: ignore[arg-type]


def chat_template_from(a: argparse.Namespace) -> str | None:
    """The --chat-template / --chat-template-file override, if any."""
    if a.chat_template_file is not None:
        return str(a.chat_template_file.read_text(encoding="utf-8"))
    return a.chat_template if a.chat_template else None


def utf8_stdio() -> None:
    """Make stdout/stderr UTF-8 whatever the console's code page (Chinese must arrive intact)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(encoding="utf-8", errors="replace")
