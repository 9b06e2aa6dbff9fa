"""The package ladder of docs/ARCHITECTURE.md, checked on the source: no import cycle, no import up.

Every ``import`` in ``src/lamina`` counts, at module level or inside a function alike: a lazy import
still couples two modules. Modules rank by the longest matching prefix in ``RANKS``; an import may
point to the same rung or below. ``ALLOWED_UP`` lists the few that must point up, each with its reason:
they are calls from a method to the package above that serves it (``Model.save`` → saving), lazy by
necessity, so the loop each closes is the only one allowed; the graph without them has no cycle.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "lamina"

# Bottom to top; the rungs match the table in docs/ARCHITECTURE.md.
RANKS = {
    # engine: arrays, the tape, names, and the registry every family registers into
    "lamina.version": 0, "lamina.backend": 0, "lamina.naming": 0, "lamina.special": 0, "lamina.regular_files": 0,
    "lamina.autodiff": 1,
    "lamina.config": 0, "lamina.random": 1,  # keras.config reads backend; keras.random draws Variables/Tensors
    "lamina.saving.__init__": 0,  # re-exports the registry only; the file functions load lazily
    "lamina.dtype_policies": 0,  # DTypePolicy and the global policy: layers, losses and metrics read them
    "lamina.mixed_precision": 0,  # keras.mixed_precision: older names of the dtype-policy functions
    "lamina.saving.errors": 0, "lamina.saving.object_registry": 0, "lamina.saving.object_config": 0,
    "lamina.tree": 0,  # keras.tree: nested lists/tuples/dicts (plain Python); losses and models walk them
    "lamina.py_dataset": 0,  # keras.utils.PyDataset: plain Python; the batch adapters (models.data) read it
    "lamina.saving.atomic": 0,  # crash-safe writes (os only); BackupAndRestore writes its metadata with it
    "lamina.utils.file_utils": 0,  # keras.src.utils.file_utils: path joining and checks (os only); saving uses it
    "lamina.utils.sequence_utils": 0, "lamina.utils.timeseries_dataset_utils": 0,  # pad_sequences; windows (PyDataset)
    # maths
    "lamina.activations": 10, "lamina.ops": 10,
    "lamina.conv_kernels": 10,  # im2col/col2im convolution kernels; ops.conv and the conv layers use them
    "lamina.accel": 0,  # the LAMINA_ACCELERATE switch and the compile-once cache of the numba kernels
    "lamina.scratch": 0,  # reused large arrays, handed out again once only the pool refers to them
    "lamina.row_split": 0,  # batch rows in blocks on threads, BLAS held at one thread (threadpoolctl)
    "lamina.winograd_accel": 10,  # optional numba transforms of Winograd's F(4x4, 3x3); conv_kernels uses them
    "lamina.conv_accel": 10,  # optional numba max pooling (winner kept); pooling, the compiled step, Sequential
    "lamina.conv_variant_kernels": 10,  # transposed/depthwise/separable convolutions on conv_kernels; ops + layers
    # parameters
    "lamina.initializers": 20, "lamina.regularizers": 20, "lamina.constraints": 20,
    "lamina.quantizers": 20,  # abs-max / int4 / float8 formulas and configs; Dense quantizes with them
    "lamina.layers": 30, "lamina.layers.op_layer": 30,  # op nodes; wraps lamina.ops for KerasTensors
    "lamina.layers.string_hash": 30,  # FarmHash Fingerprint64 and SipHash-2-4 on NumPy (the Hashing layer's)
    # objectives
    "lamina.losses": 40, "lamina.metrics": 40, "lamina.optimizers": 40,
    # whole-object configs (know every family above; models use them for compile configs) and the
    # input adapters (arrays, dicts, generators → batches), which the doctor's data checks use too
    "lamina.saving.serialization_lib": 45, "lamina.saving.compile_config": 45, "lamina.models.data": 45,
    # what training uses: callbacks and the activation doctor take a model, never import one
    "lamina.callbacks": 50, "lamina.diagnostics": 50,
    "lamina.diagnostics.recurrent_health": 50,  # replays RNN/LSTM/GRU layers (layers, rank 30) for the doctor
    "lamina.models": 60, "lamina.models.cloning": 60,  # clone_model: rebuilds Sequential/Functional graphs
    # fold() rewrites a model into a new Sequential; the package namespace re-exports it
    "lamina.diagnostics.fold": 65, "lamina.diagnostics.__init__": 65,
    # around: files, data, processes, pictures, the command line, the public namespaces
    "lamina.saving": 70,  # the files: saving_lib, saving_api, h5_weights, legacy_h5, state_walk, ...
    "lamina.distribute": 70, "lamina.datasets": 70, "lamina.plot": 70, "lamina.utils": 75,
    "lamina.model_visualization": 75, "lamina.wrappers": 75,  # keras.utils.plot_model; keras.wrappers (sklearn)
    "lamina": 90, "lamina.cli": 95,
    "lamina.playground": 92,  # the browser playground: builds on the public lamina; the cli starts it
}

# (importer, imported): imports that point up the ladder on purpose.
ALLOWED_UP = {
    # Model.save / save_weights / load_weights are the user's door to the files, as in Keras.
    ("lamina.models.model", "lamina.saving.saving_api"),
    # keras.models.load_model / save_model / model_from_json are spelled under models too.
    ("lamina.models", "lamina.saving.saving_api"),
}


_PACKAGES = {".".join(p.relative_to(SRC.parent).parent.parts) for p in SRC.rglob("__init__.py")}


def _module_names() -> dict[str, pathlib.Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imported(node: ast.AST, module: str, is_package: bool, known: dict) -> set[str]:
    """The lamina modules one import statement names (``from pkg import sub`` names ``pkg.sub``)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name.split(".")[0] == "lamina"}
    if not isinstance(node, ast.ImportFrom):
        return set()
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    if base.split(".")[0] != "lamina":
        return set()
    return {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}


def import_graph() -> dict[str, set[str]]:
    known = _module_names()
    graph = {}
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets = set()
        for node in ast.walk(tree):
            targets |= _imported(node, module, path.name == "__init__.py", known)
        graph[module] = {t for t in targets if t != module}
    return graph


def rank(module: str) -> int:
    if module in _PACKAGES:  # a package's own __init__ may rank apart from its submodules
        module += ".__init__"
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in RANKS:
            return RANKS[prefix]
    raise KeyError(module)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (iterative Tarjan)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in graph:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_every_module_has_a_rung():
    unranked = []
    for module in _module_names():
        try:
            rank(module)
        except KeyError:
            unranked.append(module)
    assert not unranked, f"add these modules to RANKS (and to docs/ARCHITECTURE.md): {unranked}"


def test_no_import_points_up_the_ladder():
    graph = import_graph()
    up = sorted((a, b) for a, targets in graph.items() for b in targets
                if b in graph and rank(b) > rank(a) and (a, b) not in ALLOWED_UP)
    assert not up, "imports that point up the ladder:\n" + "\n".join(
        f"  {a} (rung {rank(a)}) imports {b} (rung {rank(b)})" for a, b in up)


def test_allowed_up_imports_are_still_needed():
    graph = import_graph()
    stale = sorted(edge for edge in ALLOWED_UP if edge[1] not in graph.get(edge[0], set()))
    assert not stale, f"remove these from ALLOWED_UP: {stale}"


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    for importer, imported in ALLOWED_UP:
        graph[importer].discard(imported)
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(f"  {c}" for c in found)


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"a"}, "c": set()}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}}, [["a", "b", "c"]]),
])
def test_cycle_finder(graph, expected):
    assert cycles(graph) == expected
