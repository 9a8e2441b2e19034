"""Fusing our exporter's self-attention into ONNX Runtime's ``Attention`` op, before int8.

A short text query is ~8 tokens: at 8 rows a transformer block's cost is not its FLOPs but
its ops. :class:`export.model.Attention` exports as some 30 nodes a block (the packed
in-projection's MatMul and Add, a Reshape and Transpose into heads, three Gathers for q, k
and v, the scale, k's transpose, two MatMuls, the mask's Add, the Softmax, the merge of the
heads, and the Shape/Gather/Unsqueeze/Concat arithmetic of the reshapes), each a kernel
launch of a few microseconds: ViT-B/32's int8 text tower spent about a third of its kernel
time in them (ONNX Runtime's profiler, one 8-token query). ONNX Runtime's transformer
optimizer does not know this pattern (its CLIP fusion expects Hugging Face's separate q, k
and v projections), so it is matched here, exactly, and replaced by one
``com.microsoft.Attention`` node (``unidirectional`` for the text tower's causal mask);
``quantize_dynamic`` then makes it a ``QAttention``. The rest is left to the session's own
graph optimizations (QuickGelu, the int8 MatMul with its bias). That optimizer's further
fusions run on top (SkipLayerNormalization for each residual Add + LayerNorm) measured
slower here (3.25 ms against 2.89 a query), so they are not used.

A node is fused only where every piece is what our exporter writes: the mask must be the
causal ``-inf`` triangle (sliced from its start) or absent, the scale ``head_dim ** -0.5``,
the shapes those of packed q, k, v heads. Anything else is left as it is. The caller
(export/quantize.py) still compares the fused graph's vectors with the unfused one's before
it keeps it.
"""

from __future__ import annotations

import numpy as np

MS_DOMAIN = "com.microsoft"


class _Graph:
    """Producers, consumers and constant values of an ONNX graph's nodes."""

    def __init__(self, graph):
        from onnx import numpy_helper

        self.graph = graph
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.init = {t.name: t for t in graph.initializer}
        self.outputs = {o.name for o in graph.output}
        self._np = numpy_helper

    def source(self, name: str) -> str:
        """``name``, or the initializer an Identity chain passes on as ``name`` (torch's
        exporter writes one where two parameters hold the same values: random-init biases)."""
        node = self.producer.get(name)
        while node is not None and node.op_type == "Identity":
            name = node.input[0]
            node = self.producer.get(name)
        return name

    def const(self, name: str):
        """The value of ``name`` if it is an initializer or a Constant node's output."""
        name = self.source(name)
        if name in self.init:
            return self._np.to_array(self.init[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    return self._np.to_array(attr.t)
        return None

    def node(self, name: str, op_type: str):
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op_type else None

    def only_consumer(self, name: str, op_type: str):
        users = self.consumers.get(name, [])
        if len(users) == 1 and users[0].op_type == op_type:
            return users[0]
        return None


def _attr(node, name: str, default=None):
    from onnx import helper

    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def _other(node, name: str) -> str:
    """The input of a two-input node that is not ``name``."""
    a, b = node.input
    return b if a == name else a


def _shape_dims(g: _Graph, name: str) -> list | None:
    """A Reshape's target shape, each dimension an int or None where it is computed at run
    time (the exporter concatenates the input's own batch and length with constants)."""
    value = g.const(name)
    if value is not None:
        return [int(v) for v in np.ravel(value)]
    concat = g.node(name, "Concat")
    if concat is None:
        return None
    dims: list = []
    for part in concat.input:
        value = g.const(part)
        if value is None:
            dims.append(None)  # one dynamic dimension (an Unsqueeze of a Shape's Gather)
        else:
            dims.extend(int(v) for v in np.ravel(value))
    return dims


def _is_causal_mask(g: _Graph, name: str) -> bool:
    """``name`` is the causal mask: a Constant ``triu(-inf, 1)`` square, sliced on its two
    axes from 0 with step 1 (what ``attn_mask[:length, :length]`` exports as)."""
    while True:
        value = g.const(name)
        if value is not None:
            break
        node = g.node(name, "Slice")
        if node is None or len(node.input) < 3:
            return False
        starts = g.const(node.input[1])
        axes = g.const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
        steps = g.const(node.input[4]) if len(node.input) > 4 and node.input[4] else None
        if starts is None or np.any(starts != 0) or (steps is not None and np.any(steps != 1)):
            return False
        if axes is not None and not set(int(a) for a in np.ravel(axes)) <= {0, 1, -1, -2}:
            return False
        name = node.input[0]
    if value.ndim != 2 or value.shape[0] != value.shape[1] or value.shape[0] < 2:
        return False
    upper = np.triu(np.ones(value.shape, dtype=bool), 1)
    return bool(np.all(np.isneginf(value[upper])) and np.all(value[~upper] == 0))


def _match(g: _Graph, softmax):
    """The pieces of one exported attention around ``softmax``, or None."""
    if _attr(softmax, "axis", -1) not in (-1, 3):
        return None
    scores = softmax.input[0]
    causal = False
    add_mask = g.node(scores, "Add")
    if add_mask is not None:
        mm1 = next((g.node(i, "MatMul") for i in add_mask.input if g.node(i, "MatMul")), None)
        if mm1 is None or not _is_causal_mask(g, _other(add_mask, mm1.output[0])):
            return None
        causal = True
    else:
        mm1 = g.node(scores, "MatMul")
    if mm1 is None:
        return None
    mul = g.node(mm1.input[0], "Mul")
    tk = g.node(mm1.input[1], "Transpose")
    if mul is None or tk is None or list(_attr(tk, "perm", [])) != [0, 1, 3, 2]:
        return None
    gq = next((g.node(i, "Gather") for i in mul.input if g.node(i, "Gather")), None)
    if gq is None:
        return None
    scale = g.const(_other(mul, gq.output[0]))
    gk = g.node(tk.input[0], "Gather")
    mm2 = g.only_consumer(softmax.output[0], "MatMul")
    if scale is None or scale.size != 1 or gk is None or mm2 is None:
        return None
    gv = g.node(mm2.input[1], "Gather")
    if gv is None or mm2.input[0] != softmax.output[0]:
        return None
    heads_t = g.node(gq.input[0], "Transpose")
    if heads_t is None or any(x.input[0] != gq.input[0] for x in (gk, gv)):
        return None
    for gather, index in ((gq, 0), (gk, 1), (gv, 2)):
        at = g.const(gather.input[1])
        if _attr(gather, "axis", 0) != 0 or at is None or at.ndim != 0 or int(at) != index:
            return None
    if list(_attr(heads_t, "perm", [])) != [2, 0, 3, 1, 4]:
        return None
    split = g.node(heads_t.input[0], "Reshape")
    shape = _shape_dims(g, split.input[1]) if split is not None else None
    if shape is None or len(shape) != 5 or shape[2] != 3 or None in shape[3:]:
        return None
    heads, head_dim = int(shape[3]), int(shape[4])
    bias_add = g.node(split.input[0], "Add")
    if bias_add is None:
        return None
    mm_in = next((g.node(i, "MatMul") for i in bias_add.input if g.node(i, "MatMul")), None)
    if mm_in is None:
        return None
    bias = g.const(_other(bias_add, mm_in.output[0]))
    weight = g.const(mm_in.input[1])
    width = heads * head_dim
    if (
        weight is None
        or bias is None
        or weight.shape != (width, 3 * width)
        or bias.shape != (3 * width,)
        or abs(float(scale.reshape(())) - head_dim**-0.5) > 1e-6 * head_dim**-0.5
    ):
        return None
    merge_t = g.only_consumer(mm2.output[0], "Transpose")
    if merge_t is None or list(_attr(merge_t, "perm", [])) != [0, 2, 1, 3]:
        return None
    merge = g.only_consumer(merge_t.output[0], "Reshape")
    if merge is None:
        return None
    private = [mm_in, bias_add, split, heads_t, gq, gk, gv, mul, tk, mm1, softmax, mm2]
    private += ([add_mask] if add_mask is not None else []) + [merge_t, merge]
    inside = {id(n) for n in private}
    # Only the merged heads may be read outside: any other piece another node reads stays.
    for node in private[:-1]:
        for out in node.output:
            if out in g.outputs or any(id(u) not in inside for u in g.consumers.get(out, [])):
                return None
    return {
        "input": mm_in.input[0],
        "weight": g.source(mm_in.input[1]),
        "bias": g.source(_other(bias_add, mm_in.output[0])),
        "output": merge.output[0],
        "heads": heads,
        "causal": causal,
        "private": private,
    }


def _prune(graph) -> None:
    """Drop the nodes no graph output depends on (the fused blocks' shape arithmetic)."""
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(list(graph.node)):
        if any(out in needed for out in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    used = {i for node in graph.node for i in node.input}
    live = [t for t in graph.initializer if t.name in used or t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(live)


def fuse_attention(model) -> int:
    """Replace every attention of our exporter's pattern in ``model`` (an onnx ModelProto,
    changed in place) by one ``com.microsoft.Attention``; returns how many."""
    from onnx import helper

    g = _Graph(model.graph)
    fused = []
    for node in list(model.graph.node):
        if node.op_type == "Softmax":
            found = _match(g, node)
            if found is not None:
                fused.append(found)
    if not fused:
        return 0
    private = {id(n) for f in fused for n in f["private"]}
    new_nodes = []
    by_output = {f["private"][-1].output[0]: f for f in fused}
    for node in model.graph.node:
        if id(node) not in private:
            new_nodes.append(node)
            continue
        found = by_output.get(node.output[0])
        if found is None:
            continue
        # Where the merged heads were: every input is ready by then (topological order).
        new_nodes.append(
            helper.make_node(
                "Attention",
                [found["input"], found["weight"], found["bias"]],
                [found["output"]],
                name=f"FusedAttention_{len(new_nodes)}",
                domain=MS_DOMAIN,
                num_heads=found["heads"],
                unidirectional=int(found["causal"]),
            )
        )
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    if not any(op.domain == MS_DOMAIN for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    _prune(model.graph)
    return len(fused)
