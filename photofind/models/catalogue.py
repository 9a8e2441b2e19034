"""Known pretrained CLIP models and where to get them.

Kept as Python data rather than a JSON file so that it ships in every wheel and frozen bundle
without package-data configuration.

Two kinds of entry:

* ``onnx``: files of a published ONNX export that ``photofind models install NAME`` fetches
  and turns into a photofind package with :mod:`photofind.models.adapters`; no torch needed.
* ``checkpoint``: the original weights, for users with the ``export`` extra, who convert them
  with ``python -m export convert`` and then ``photofind models install FOLDER``.

Honesty about hashes: a ``sha256`` of None means *nobody on this project has checked the
file*: the development machines have no route to the hubs. The installer then computes the
hash, shows it and writes it into the package, but says plainly that it was not pinned. Pin
a hash here only after downloading the file and comparing with the publisher's listing (the
Hugging Face file page shows each LFS file's SHA256), and pin ``revision`` to that commit at
the same time, so that the hash and the URL describe the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from photofind.errors import ModelError

HF = "https://huggingface.co"


@dataclass(frozen=True)
class RemoteFile:
    path: str  # inside the published layout, '/'-separated
    sha256: str | None = None  # None: not verified by this project (see module docstring)
    max_bytes: int = 2 << 30


@dataclass(frozen=True)
class CatalogueEntry:
    name: str  # what `photofind models install NAME` takes
    kind: str  # "onnx" or "checkpoint"
    arch: str
    description: str
    license: str
    source: str  # the human-readable origin (a hub page), also written into model.json
    layout: str = ""  # onnx: the adapter that reads it ("immich")
    base_url: str = ""  # onnx: files[i].path is appended to it
    revision: str = ""  # the hub revision the URLs point at; "main" means unpinned
    files: tuple[RemoteFile, ...] = ()
    checkpoint_url: str = ""  # checkpoint: the weights file
    checkpoint_sha256: str | None = None
    checkpoint_sha256_note: str = ""
    activation: str = ""  # checkpoint: what to pass to `export convert --activation`
    installs_as: str = ""  # the installed package's name (default: name)
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def package_name(self) -> str:
        return self.installs_as or self.name

    def url_of(self, remote: RemoteFile) -> str:
        return self.base_url + remote.path

    @property
    def pinned(self) -> bool:
        """True when every file has a pinned hash (the revision alone does not count)."""
        if self.kind == "onnx":
            return all(f.sha256 for f in self.files)
        return bool(self.checkpoint_sha256)

    def export_command(self, checkpoint_file: str = "CHECKPOINT") -> str:
        activation = f" --activation {self.activation}" if self.activation else ""
        return (
            f"python -m export convert --arch {self.arch} --checkpoint {checkpoint_file}"
            f"{activation} --name {self.package_name} --out {self.package_name} --check"
        )


def _immich(repo: str, arch: str, description: str, license: str, installs_as: str):
    # Immich's exporter (machine-learning/export in immich-app/immich) writes this layout:
    # config.json (OpenCLIP model config), visual/{model.onnx, preprocess_cfg.json},
    # textual/{model.onnx, tokenizer.json, ...}. Sizes are upper bounds, not facts.
    return CatalogueEntry(
        name=repo,
        kind="onnx",
        arch=arch,
        description=description,
        license=license,
        source=f"{HF}/immich-app/{repo}",
        layout="immich",
        base_url=f"{HF}/immich-app/{repo}/resolve/main/",
        revision="main",
        files=(
            RemoteFile("config.json", max_bytes=1 << 20),
            RemoteFile("visual/preprocess_cfg.json", max_bytes=1 << 20),
            RemoteFile("visual/model.onnx"),
            RemoteFile("textual/tokenizer.json", max_bytes=64 << 20),
            RemoteFile("textual/model.onnx"),
        ),
        installs_as=installs_as,
        notes=(
            "sha256 of every file unknown to this project (never downloaded here): the "
            "installer computes and shows them",
            "revision 'main' is not pinned: the publisher may replace the files",
            "Immich's exports feed int32 token ids and, in its newer exporter, a fixed batch "
            "of 1; see the adapter for what photofind's runtime needs to run those",
        ),
    )


CATALOGUE: tuple[CatalogueEntry, ...] = (
    _immich(
        "ViT-B-32__openai",
        "ViT-B-32",
        "OpenAI CLIP ViT-B/32 (ONNX export by the Immich project)",
        "MIT (OpenAI CLIP weights)",
        "ViT-B-32-openai",
    ),
    _immich(
        "ViT-B-32__laion2b_s34b_b79k",
        "ViT-B-32",
        "OpenCLIP ViT-B/32 trained on LAION-2B (ONNX export by the Immich project)",
        "MIT (OpenCLIP weights)",
        "ViT-B-32-laion2b",
    ),
    CatalogueEntry(
        name="openai-ViT-B-32-checkpoint",
        kind="checkpoint",
        arch="ViT-B-32",
        description="OpenAI's released ViT-B/32 TorchScript checkpoint",
        license="MIT",
        source="https://github.com/openai/CLIP",
        checkpoint_url=(
            "https://openaipublic.azureedge.net/clip/models/"
            "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt"
        ),
        # OpenAI names each file by its sha256 and its clip.py checks the download against
        # that path segment; taken from there, not re-hashed here.
        checkpoint_sha256="40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
        checkpoint_sha256_note="the URL's path segment, which OpenAI's clip.py verifies",
        activation="quick_gelu",
        installs_as="ViT-B-32-openai",
    ),
    CatalogueEntry(
        name="openai-ViT-B-16-checkpoint",
        kind="checkpoint",
        arch="ViT-B-16",
        description="OpenAI's released ViT-B/16 TorchScript checkpoint",
        license="MIT",
        source="https://github.com/openai/CLIP",
        checkpoint_url=(
            "https://openaipublic.azureedge.net/clip/models/"
            "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt"
        ),
        checkpoint_sha256="5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
        checkpoint_sha256_note="the URL's path segment, which OpenAI's clip.py verifies",
        activation="quick_gelu",
        installs_as="ViT-B-16-openai",
    ),
    CatalogueEntry(
        name="laion2b-ViT-B-32-checkpoint",
        kind="checkpoint",
        arch="ViT-B-32",
        description="OpenCLIP ViT-B/32 laion2b_s34b_b79k (exact GELU)",
        license="MIT",
        source=f"{HF}/laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
        checkpoint_url=f"{HF}/laion/CLIP-ViT-B-32-laion2B-s34B-b79K/resolve/main/"
        "open_clip_pytorch_model.bin",
        checkpoint_sha256=None,
        checkpoint_sha256_note="unknown to this project",
        activation="gelu",
        installs_as="ViT-B-32-laion2b",
    ),
    CatalogueEntry(
        name="laion400m-ViT-B-32-quickgelu-checkpoint",
        kind="checkpoint",
        arch="ViT-B-32",
        description="OpenCLIP ViT-B/32 laion400m_e32 (QuickGELU)",
        license="MIT",
        source="https://github.com/mlfoundations/open_clip",
        checkpoint_url="https://github.com/mlfoundations/open_clip/releases/download/"
        "v0.2-weights/vit_b_32-quickgelu-laion400m_e32-46683a32.pt",
        checkpoint_sha256=None,
        checkpoint_sha256_note="only the prefix 46683a32 is known (OpenCLIP's file name)",
        activation="quick_gelu",
        installs_as="ViT-B-32-laion400m",
    ),
)

# Short names users will type.
ALIASES = {"ViT-B-32": "ViT-B-32__openai", "ViT-B/32": "ViT-B-32__openai"}


def entries() -> tuple[CatalogueEntry, ...]:
    return CATALOGUE


def find(name: str) -> CatalogueEntry | None:
    name = ALIASES.get(name, name)
    for entry in CATALOGUE:
        if entry.name == name:
            return entry
    return None


def get(name: str) -> CatalogueEntry:
    entry = find(name)
    if entry is None:
        known = ", ".join(e.name for e in CATALOGUE)
        raise ModelError(f"{name!r} is not in the model catalogue (known: {known})")
    return entry
