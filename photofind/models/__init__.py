"""The model store: getting, installing and choosing CLIP model packages.

* :mod:`photofind.models.store`: install / list / use / remove, the library's active model.
* :mod:`photofind.models.download`: resumable, hash-checked https downloads (stdlib only).
* :mod:`photofind.models.archive`: safe unpacking of .tar.gz/.tgz/.zip packages.
* :mod:`photofind.models.catalogue`: known pretrained models and their sources.
* :mod:`photofind.models.adapters`: other projects' ONNX layouts -> photofind packages.
"""
