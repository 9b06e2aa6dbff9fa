"""Counts per file, module and total; failure causes and skip reasons grouped; text and JSON summaries."""

from __future__ import annotations

import collections
import re

OUTCOMES = ("passed", "failed", "error", "skipped")

# Each failure message reduced to its cause, so that one missing name counts once however many tests hit it.
_CAUSES = [
    (re.compile(r"module '([\w.]+)'(?: \(lamina[^)]*\))? has no attribute '(\w+)'"), "missing: {0}.{1}"),
    (re.compile(r"cannot import name '(\w+)' from '([\w.]+)'"), "missing: {1}.{0}"),
    (re.compile(r"lamina has no module for '([\w.]+)' \(a test read '(\w+)'"), "missing module: {0} ({1})"),
    (re.compile(r"lamina has no module for '([\w.]+)'"), "missing module: {0}"),
    (re.compile(r"No module named '([\w.]+)'"), "missing module: {0}"),
    (re.compile(r"'(\w+)' object has no attribute '(\w+)'"), "missing attribute: {0}.{1}"),
    (re.compile(r"type object '(\w+)' has no attribute '(\w+)'"), "missing attribute: {0}.{1}"),
    (re.compile(r"([\w.<>]+)\(\) got an unexpected keyword argument '(\w+)'"), "unexpected keyword: {0}({1}=)"),
    (re.compile(r"([\w.<>]+)\(\) missing \d+ required positional argument"), "missing argument: {0}()"),
    (re.compile(r"([\w.<>]+)\(\) takes \d+ positional arguments? but \d+ (?:were|was) given"),
     "too many positional arguments: {0}()"),
    (re.compile(r"<module '([\w.]+)' .*> does not have the attribute '(\w+)'"), "missing: {0}.{1} (mock.patch)"),
    (re.compile(r"keras-suite: the test ran over"), "timeout (one test ran too long)"),
    (re.compile(r'^AssertionError: ".*" does not match "'),
     "error message wording differs from Keras's (assertRaisesRegex)"),
    (re.compile(r"is stateless, so it should be built after instantiation"),
     "stateless layer not `built` at construction (run_layer_test)"),
]

# Skip reasons by the categories issue 13 allows; anything else is flagged.
_SKIP_CATEGORIES = [
    ("TensorFlow-only", re.compile(r"tensorflow|\bTF\b|tf\.", re.IGNORECASE)),
    ("JAX-specific", re.compile(r"\bjax\b", re.IGNORECASE)),
    ("sparse/ragged tensors", re.compile(r"sparse|ragged", re.IGNORECASE)),
    ("GPU", re.compile(r"gpu|tpu|device|cuda", re.IGNORECASE)),
]


def cause(message: str) -> str:
    """A failure message reduced to its cause.

    ``AttributeError: module 'keras.src.ops' (lamina: lamina.ops) has no attribute 'std'`` becomes
    ``missing: keras.src.ops.std``; other messages keep their type and text with numbers as ``N``.
    """
    for pattern, template in _CAUSES:
        found = pattern.search(message)
        if found:
            return template.format(*found.groups())
    kind, _, rest = message.partition(": ")
    rest = re.sub(r"0x[0-9a-f]+", "0x…", rest)
    rest = re.sub(r"<class '[\w.]+'>", "<class>", rest)
    rest = re.sub(r"-?\d+(\.\d+)?(e-?\d+)?", "N", rest)
    return f"{kind}: {rest[:120]}" if rest else kind[:120]


def skip_category(reason: str) -> str:
    for name, pattern in _SKIP_CATEGORIES:
        if pattern.search(reason):
            return name
    return "OTHER (not an allowed skip category)"


def file_of(nodeid: str, prefix: str) -> str:
    return nodeid.split("::", 1)[0].removeprefix(prefix)


def summarize(modules: dict[str, list[str]], run: dict, expected: dict[str, int], prefix: str,
              skipped_files: dict[str, str]) -> dict:
    """The summary dict: per file / module / total counts, causes, skip reasons.

    ``expected`` is each file's test count from the oracle's collection, used for a file that could not
    be collected under lamina (each of its tests counts as an error with the collection error's cause)
    and for a file skipped whole (``skipped_files``: file → reason).
    """
    per_file = {f: dict.fromkeys(OUTCOMES, 0) for files in modules.values() for f in files}
    causes, skips, examples = collections.Counter(), collections.Counter(), {}
    for nodeid, record in run.get("tests", {}).items():
        name = file_of(nodeid, prefix)
        if name not in per_file:
            continue
        per_file[name][record["outcome"]] += 1
        if record["outcome"] in ("failed", "error"):
            key = cause(record["reason"])
            causes[key] += 1
            examples.setdefault(key, f"{nodeid.removeprefix(prefix)}: {record['reason'][:300]}")
        elif record["outcome"] == "skipped":
            skips[record["reason"]] += 1
    for nodeid, message in run.get("collect_errors", {}).items():
        name = file_of(nodeid, prefix)
        if name in per_file:
            count = max(expected.get(name, 1), 1)
            per_file[name]["error"] += count
            key = f"collection: {cause(message)}"
            causes[key] += count
            examples.setdefault(key, f"{name}: {message[:300]}")
    for name, reason in skipped_files.items():
        if name in per_file:
            per_file[name]["skipped"] += max(expected.get(name, 1), 1)
            skips[reason] += max(expected.get(name, 1), 1)
    per_module = {m: _add(per_file[f] for f in files) for m, files in modules.items()}
    total = _add(per_module.values())
    categories = collections.Counter()
    for reason, count in skips.items():
        categories[skip_category(reason)] += count
    return {
        "total": total, "pass_rate": rate(total), "modules": per_module, "files": per_file,
        "causes": causes.most_common(), "cause_examples": examples,
        "skip_reasons": skips.most_common(), "skip_categories": categories.most_common(),
    }


def _add(counts) -> dict:
    total = dict.fromkeys(OUTCOMES, 0)
    for c in counts:
        for key in OUTCOMES:
            total[key] += c[key]
    return total


def rate(counts: dict) -> float:
    """passed / (passed + failed + errors); skips are not counted either way."""
    ran = counts["passed"] + counts["failed"] + counts["error"]
    return counts["passed"] / ran if ran else 0.0


def _row(name: str, c: dict) -> str:
    return (f"{name:<58} {c['passed']:>5} {c['failed']:>5} {c['error']:>5} {c['skipped']:>5} "
            f"{100 * rate(c):>6.1f}%")


def render(summary: dict, top: int = 40) -> str:
    header = f"{'':<58} {'pass':>5} {'fail':>5} {'error':>5} {'skip':>5} {'rate':>7}"
    lines = ["Per file:", header]
    lines += [_row(f, c) for f, c in summary["files"].items()]
    lines += ["", "Per module:", header]
    lines += [_row(m, c) for m, c in summary["modules"].items()]
    lines += [_row("TOTAL", summary["total"]), "", f"Top failure causes (of {len(summary['causes'])}):"]
    lines += [f"{count:>5}  {key}" for key, count in summary["causes"][:top]]
    lines += ["", "Skip categories:"]
    lines += [f"{count:>5}  {key}" for key, count in summary["skip_categories"]]
    lines += ["", "Skip reasons:"]
    lines += [f"{count:>5}  {key}" for key, count in summary["skip_reasons"]]
    return "\n".join(lines)
