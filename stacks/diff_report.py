"""A :class:`~stacks.render_diff.TreeDiff` as text (terminal, CI log) or Markdown (a PR comment).

Both say the same things in the same order: CA events, then every cluster's
objects added (``+``), removed (``-``) and changed (``~``; ``!`` in Markdown,
where GitHub's ``diff`` highlighting colours it) with their field lines.
"""

from __future__ import annotations

from stacks.render_diff import ClusterDiff, ObjectChange, TreeDiff

# GitHub refuses comments over 65536 characters; leave room for the Pulumi text around it.
MARKDOWN_LIMIT = 60000
MARKDOWN_OBJECTS_PER_CLUSTER = 100
COMMENT_TAG = "<!-- meshboot-diff -->"


def _counts(c: ClusterDiff) -> str:
    parts = [f"{n} {what}" for what in ("added", "removed", "changed") if (n := c.count(what))]
    return ", ".join(parts) if parts else "no changes"


def _heading(c: ClusterDiff) -> str:
    status = f" (cluster {c.status})" if c.status else ""
    return f"{c.name}{status}: {_counts(c)}"


def _object_line(ch: ObjectChange, changed_mark: str) -> str:
    mark = {"added": "+", "removed": "-", "changed": changed_mark}[ch.change]
    summary = f" ({ch.summary})" if ch.summary else ""
    return f"{mark} {ch.key.text()}{summary}"


def _object_lines(ch: ObjectChange, changed_mark: str, indent: str) -> list[str]:
    lines = [_object_line(ch, changed_mark)]
    lines += [f"{indent}{line}" for line in ch.fields]
    if ch.more:
        lines.append(f"{indent}... {ch.more} more")
    return lines


def totals(diff: TreeDiff) -> str:
    n = {w: sum(c.count(w) for c in diff.clusters) for w in ("added", "removed", "changed")}
    touched = sum(1 for c in diff.clusters if c.changes or c.status)
    ca = [e.text.split(":")[0] for e in diff.ca if e.change]
    if not any(n.values()) and not ca and not touched:
        return "no changes"
    objects = ", ".join(f"{v} {w}" for w, v in n.items() if v) or "no object changes"
    tail = f"; CA: {'; '.join(ca)}" if ca else ""
    return f"{objects} in {touched} cluster{'s' if touched != 1 else ''}{tail}"


def text_report(diff: TreeDiff) -> str:
    lines = [f"meshboot diff: {diff.old.label} -> {diff.new.label}"]
    lines += [f"note: {n}" for n in diff.notes]
    lines.append("CA:")
    lines += [f"  {e.text}" for e in diff.ca]
    for c in diff.clusters:
        lines.append(_heading(c))
        for ch in c.changes:
            lines += ["  " + line for line in _object_lines(ch, "~", "    ")]
    lines.append(f"summary: {totals(diff)}")
    return "\n".join(lines) + "\n"


def _fence(body: list[str]) -> str:
    """A code fence longer than any backtick run in the body, so no value can close it."""
    return "`" * max(3, _longest_backticks(body) + 1)


def _longest_backticks(body: list[str]) -> int:
    best = 0
    for line in body:
        run = 0
        for ch in line:
            run = run + 1 if ch == "`" else 0
            best = max(best, run)
    return best


def _md_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("|", "\\|").replace("<", "&lt;")


def _code_span(text: str) -> str:
    """``text`` as inline code that no backtick in it can close (CommonMark code spans)."""
    ticks = "`" * (_longest_backticks([text]) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def markdown_report(diff: TreeDiff, objects_per_cluster: int = MARKDOWN_OBJECTS_PER_CLUSTER) -> str:
    env = diff.new.marker.get("environment") or diff.old.marker.get("environment")
    source = diff.new.marker.get("source") or diff.old.marker.get("source")
    title = "meshboot diff"
    if env:  # from the markers: a hand-edited one must not inject Markdown or HTML
        title += f": {_code_span(str(env))}" + (f" ({_md_escape(str(source))})" if source else "")
    out = [COMMENT_TAG, f"### {title}", "", f"**{_md_escape(totals(diff))}**", ""]
    out += [f"> {_md_escape(n)}" for n in diff.notes]
    if diff.notes:
        out.append("")
    out.append("**CA**")
    out.append("")
    for e in diff.ca:
        text = _md_escape(e.text)
        out.append(f"- **{text}**" if e.change else f"- {text}")
    out.append("")
    out += ["| cluster | added | removed | changed |", "| --- | ---: | ---: | ---: |"]
    for c in diff.clusters:
        status = f" ({c.status})" if c.status else ""
        out.append(f"| {_md_escape(c.name)}{status} | {c.count('added')} | {c.count('removed')} | "
                   f"{c.count('changed')} |")
    out.append("")
    for c in diff.clusters:
        if not c.changes:
            continue
        body: list[str] = []
        for ch in c.changes[:objects_per_cluster]:
            body += _object_lines(ch, "!", "    ")
        left = len(c.changes) - objects_per_cluster
        if left > 0:
            body.append(f"... {left} more objects (run `meshboot diff` locally for all)")
        fence = _fence(body)
        out += [f"<details><summary><b>{_md_escape(c.name)}</b>: {_counts(c)}</summary>", "",
                f"{fence}diff", *body, fence, "", "</details>", ""]
    text = "\n".join(out) + "\n"
    if len(text) > MARKDOWN_LIMIT and objects_per_cluster > 5:
        return markdown_report(diff, max(5, objects_per_cluster // 4))
    return text
