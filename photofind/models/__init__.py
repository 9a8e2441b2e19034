"""The model store: getting, installing and choosing CLIP model packages.

* :mod:`photofind.models.store`: install / list / use / remove, the library's active model.
* :mod:`photofind.models.download`: resumable, hash-checked https downloads (stdlib only).
* :mod:`photofind.models.archive`: safe unpacking of .tar.gz/.tgz/.zip packages.
* :mod:`photofind.models.folder_copy`: copying a package folder as plain files, bounded.
* :mod:`photofind.models.budget`: the byte/entry caps and free-space checks of an install.
* :mod:`photofind.models.catalogue`: known pretrained models and their sources.
* :mod:`photofind.models.adapters`: other projects' ONNX layouts -> photofind packages.
"""
