"""Known pretrained CLIP models and where to get them.

Kept as Python data rather than a JSON file so that it ships in every wheel and frozen bundle
without package-data configuration.

Two kinds of entry:

* ``onnx``: files of a published ONNX export that ``photofind models install NAME`` fetches
  and turns into a photofind package with :mod:`photofind.models.adapters`; no torch needed.
  Immich's whole CLIP-family list is here (``repo`` set, no ``files``): the install asks the
  hub (``HF_ENDPOINT`` honoured, :mod:`photofind.models.hub`) for the repository's file list
  at the commit "main" points at, and fetches every file but the Arm NN / RKNN ones, each
  checked against the listing (LFS sha256, git blob id). An Immich model the catalogue does
  not know installs the same way by its name (``immich-app/NAME``).
* ``checkpoint``: the original weights, for users with the ``export`` extra, who convert them
  with ``python -m export convert`` and then ``photofind models install FOLDER``.

Honesty about hashes: a ``sha256`` of None means *nobody on this project has checked the
file*: the development machines have no route to the hubs. The hub's own listing guards an
Immich install against damage and against a file changed after the listing, not against the
publisher; so those entries count as not pinned. The installer then computes the
hash, shows it and writes it into the package, but says plainly that it was not pinned. Pin
a hash here only after downloading the file and comparing with the publisher's listing (the
Hugging Face file page shows each LFS file's SHA256), and pin ``revision`` to that commit at
the same time, so that the hash and the URL describe the same bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from photofind.errors import ModelError

HF = "https://huggingface.co"
_REPO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,95}$")


@dataclass(frozen=True)
class RemoteFile:
    path: str  # inside the published layout, '/'-separated
    sha256: str | None = None  # None: not verified by this project (see module docstring)
    max_bytes: int | None = None  # None: the install's budget (models/budget.py)
    git_oid: str | None = None  # a small file's git blob id, from the hub's listing
    size: int | None = None


# What "languages" says of an English-only model, and of the many of a multilingual one.
ENGLISH = ("en",)
_MANY = ("*",)


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
    # A Hugging Face repository ("immich-app/NAME"): its files are listed from the hub at
    # install time (every file but the Arm NN / RKNN ones), each LFS file with its sha256.
    repo: str = ""
    embed_dim: int = 0  # 0: unknown
    # The text tower's languages: ISO 639-1 codes, or ("*",) for a multilingual model
    # (``language_count`` then says about how many).
    languages: tuple[str, ...] = ENGLISH
    language_count: int = 1
    # An estimate (parameters x 4 bytes of float32) until the hub's listing gives the sizes.
    approx_bytes: int = 0
    # The entry whose image tower this model reuses (M-CLIP's text encoders were trained
    # into an existing image tower's space): a switch between the two may keep the photo
    # vectors, which the library confirms from the image graphs' hashes, never from this.
    image_tower_of: str = ""

    @property
    def package_name(self) -> str:
        return self.installs_as or self.name

    def url_of(self, remote: RemoteFile) -> str:
        return self.base_url + remote.path

    @property
    def pinned(self) -> bool:
        """True when every file has a hash pinned here (the revision alone does not count)."""
        if self.kind == "onnx":
            return bool(self.files) and all(f.sha256 or f.git_oid for f in self.files)
        return bool(self.checkpoint_sha256)

    @property
    def multilingual(self) -> bool:
        return self.languages != ENGLISH

    def speaks(self, language: str | None) -> bool:
        """Whether queries in ``language`` ("vi", "pt_BR"; None: English) suit the model."""
        from photofind.models.languages import base_language

        code = base_language(language) or "en"
        return "*" in self.languages or code in self.languages

    @property
    def languages_text(self) -> str:
        if "*" in self.languages:
            return f"multilingual (~{self.language_count})"
        return ", ".join(self.languages)

    def export_command(self, checkpoint_file: str = "CHECKPOINT") -> str:
        activation = f" --activation {self.activation}" if self.activation else ""
        return (
            f"python -m export convert --arch {self.arch} --checkpoint {checkpoint_file}"
            f"{activation} --name {self.package_name} --out {self.package_name} --check"
        )


IMMICH_NOTES = (
    "the files and their sha256 are listed from the hub at install time (LFS files by "
    "their sha256, small files by their git blob id), not pinned by this project: the "
    "development machines have no route to the hub",
    "revision 'main' is resolved to its commit at install time; model.json records it",
)


def immich_entry(
    repo: str,
    arch: str = "",
    embed_dim: int = 0,
    params_m: int = 0,
    *,
    languages: tuple[str, ...] = ENGLISH,
    language_count: int = 1,
    description: str = "",
    license: str = "",
    installs_as: str = "",
    image_tower_of: str = "",
) -> CatalogueEntry:
    """An Immich export on Hugging Face (``immich-app/REPO``), listed from the hub."""
    return CatalogueEntry(
        name=repo,
        kind="onnx",
        arch=arch or repo.split("__")[0],
        description=description or f"{repo} (ONNX export by the Immich project)",
        license=license or "see the model's hub page",
        source=f"{HF}/immich-app/{repo}",
        layout="immich",
        revision="main",
        repo=f"immich-app/{repo}",
        installs_as=installs_as,
        notes=IMMICH_NOTES,
        embed_dim=embed_dim,
        languages=languages,
        language_count=language_count,
        approx_bytes=params_m * 4_000_000,
        image_tower_of=image_tower_of,
    )


# Immich's CLIP-family list (immich_ml/models/constants.py in immich-app/immich). Embedding
# sizes and parameter counts are the architectures' published ones; sizes are estimates.
# English: name, embedding size, parameters (millions).
_IMMICH = [
    ("RN101__openai", 512, 120),
    ("RN101__yfcc15m", 512, 120),
    ("RN50__cc12m", 1024, 102),
    ("RN50__openai", 1024, 102),
    ("RN50__yfcc15m", 1024, 102),
    ("RN50x16__openai", 768, 291),
    ("RN50x4__openai", 640, 178),
    ("RN50x64__openai", 1024, 623),
    ("ViT-B-16-SigLIP-256__webli", 768, 203),
    ("ViT-B-16-SigLIP-384__webli", 768, 203),
    ("ViT-B-16-SigLIP-512__webli", 768, 204),
    ("ViT-B-16-SigLIP__webli", 768, 203),
    ("ViT-B-16-plus-240__laion400m_e31", 640, 208),
    ("ViT-B-16-plus-240__laion400m_e32", 640, 208),
    ("ViT-B-16__laion400m_e31", 512, 150),
    ("ViT-B-16__laion400m_e32", 512, 150),
    ("ViT-B-16__openai", 512, 150),
    ("ViT-B-32__laion2b_e16", 512, 151),
    ("ViT-B-32__laion400m_e31", 512, 151),
    ("ViT-B-32__laion400m_e32", 512, 151),
    ("ViT-H-14-378-quickgelu__dfn5b", 1024, 987),
    ("ViT-H-14-quickgelu__dfn5b", 1024, 986),
    ("ViT-H-14__laion2b-s32b-b79k", 1024, 986),
    ("ViT-L-14-336__openai", 768, 428),
    ("ViT-L-14-quickgelu__dfn2b", 768, 428),
    ("ViT-L-14__laion2b-s32b-b82k", 768, 428),
    ("ViT-L-14__laion400m_e31", 768, 428),
    ("ViT-L-14__laion400m_e32", 768, 428),
    ("ViT-L-14__openai", 768, 428),
    ("ViT-L-16-SigLIP-256__webli", 1024, 652),
    ("ViT-L-16-SigLIP-384__webli", 1024, 652),
    ("ViT-SO400M-14-SigLIP-384__webli", 1152, 878),
    ("ViT-g-14__laion2b-s12b-b42k", 1024, 1367),
]
# Multilingual: name, embedding size (0: unknown), parameters, languages, about how many.
_IMMICH_MULTILINGUAL = [
    ("ViT-B-16-SigLIP-i18n-256__webli", 768, 370, _MANY, 100),
    ("XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k", 512, 366, _MANY, 100),
    ("XLM-Roberta-Large-ViT-H-14__frozen_laion5b_s13b_b90k", 1024, 1193, _MANY, 100),
    ("nllb-clip-base-siglip__mrl", 768, 507, _MANY, 201),
    ("nllb-clip-base-siglip__v1", 768, 507, _MANY, 201),
    ("nllb-clip-large-siglip__mrl", 1152, 1196, _MANY, 201),
    ("nllb-clip-large-siglip__v1", 1152, 1196, _MANY, 201),
    ("ViT-B-16-SigLIP2__webli", 768, 375, _MANY, 100),
    ("ViT-B-32-SigLIP2-256__webli", 768, 377, _MANY, 100),
    ("ViT-L-16-SigLIP2-256__webli", 1024, 882, _MANY, 100),
    ("ViT-L-16-SigLIP2-384__webli", 1024, 882, _MANY, 100),
    ("ViT-L-16-SigLIP2-512__webli", 1024, 882, _MANY, 100),
    ("ViT-SO400M-14-SigLIP2-378__webli", 1152, 1136, _MANY, 100),
    ("ViT-SO400M-14-SigLIP2__webli", 1152, 1136, _MANY, 100),
    ("ViT-SO400M-16-SigLIP2-256__webli", 1152, 1136, _MANY, 100),
    ("ViT-SO400M-16-SigLIP2-384__webli", 1152, 1136, _MANY, 100),
    ("ViT-SO400M-16-SigLIP2-512__webli", 1152, 1136, _MANY, 100),
    ("ViT-gopt-16-SigLIP2-256__webli", 1536, 1870, _MANY, 100),
    ("ViT-gopt-16-SigLIP2-384__webli", 1536, 1870, _MANY, 100),
    ("fg-clip2-base", 0, 0, ("en", "zh"), 2),
]
# M-CLIP (Carlsson et al.): name, embedding size, parameters, image tower, languages.
_MCLIP = [
    ("LABSE-Vit-L-14", 768, 775, "ViT-L-14__openai", 109),
    ("XLM-Roberta-Large-Vit-B-16Plus", 640, 768, "ViT-B-16-plus-240__laion400m_e32", 68),
    ("XLM-Roberta-Large-Vit-B-32", 512, 648, "ViT-B-32__openai", 68),
    ("XLM-Roberta-Large-Vit-L-14", 768, 864, "ViT-L-14__openai", 68),
]


def _immich_catalogue() -> list[CatalogueEntry]:
    found = [
        immich_entry(
            "ViT-B-32__openai",
            "ViT-B-32",
            512,
            151,
            description="OpenAI CLIP ViT-B/32 (ONNX export by the Immich project)",
            license="MIT (OpenAI CLIP weights)",
            installs_as="ViT-B-32-openai",
        ),
        immich_entry(
            "ViT-B-32__laion2b-s34b-b79k",
            "ViT-B-32",
            512,
            151,
            description="OpenCLIP ViT-B/32 trained on LAION-2B (ONNX export by the Immich project)",
            license="MIT (OpenCLIP weights)",
            installs_as="ViT-B-32-laion2b",
        ),
    ]
    found += [immich_entry(name, "", dim, params) for name, dim, params in _IMMICH]
    found += [
        immich_entry(name, "", dim, params, languages=languages, language_count=count)
        for name, dim, params, languages, count in _IMMICH_MULTILINGUAL
    ]
    found += [
        immich_entry(
            name,
            name,
            dim,
            params,
            languages=_MANY,
            language_count=count,
            description=f"M-CLIP {name}: a multilingual text encoder trained for {tower}'s "
            "image tower (ONNX export by the Immich project)",
            image_tower_of=tower,
        )
        for name, dim, params, tower, count in _MCLIP
    ]
    return found


CATALOGUE: tuple[CatalogueEntry, ...] = (
    *_immich_catalogue(),
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
    if name.startswith("immich-app/"):
        name = name[len("immich-app/") :]
    for entry in CATALOGUE:
        if entry.name == name:
            return entry
    return None


def find_or_immich(name: str) -> CatalogueEntry | None:
    """A catalogue entry; or, for a name the catalogue does not know that names an Immich
    model (``immich-app/NAME``, or Immich's ``ARCH__PRETRAINED`` form), an entry whose
    files are listed from the hub."""
    entry = find(name)
    if entry is not None:
        return entry
    repo = name[len("immich-app/") :] if name.startswith("immich-app/") else name
    if (name.startswith("immich-app/") or "__" in repo) and _REPO_NAME.match(repo):
        return immich_entry(repo)
    return None


def get(name: str) -> CatalogueEntry:
    entry = find(name)
    if entry is None:
        known = ", ".join(e.name for e in CATALOGUE)
        raise ModelError(f"{name!r} is not in the model catalogue (known: {known})")
    return entry
