"""The incremental scanning core shared by whole-text scans and streaming.

``Session`` consumes original text in pieces and, after each piece, decides as much as can
be decided. A whole-text scan is simply one piece followed by ``finish``; streaming feeds
chunks. Both run the same code, so they agree by construction wherever the decisions made
early are provably the ones a whole-text scan makes. The argument:

1. Normalisation is per segment (see ``normalize``), so normalising a suffix of the stream
   that starts at a segment boundary gives exactly the matching part of the whole-text
   views. Only text up to the last segment start is normalised (a trailing combining mark
   could still change the last segment).
2. Each detector keeps ``q``: the position its whole-text search chain continues from.
   With ``U`` = the leftmost position ``>= q`` whose remaining text is in the pattern's
   prefix language ``P`` (``regex_tools``), every candidate match starting before ``U``
   lies, with all the context it reads, inside the text we have; so matches starting
   before ``U`` (and the absence of matches) are decided exactly as in the whole text.
   ``q`` then moves to the end of the last decided match, or to ``U``.
3. A raw finding becomes final once every detector that could suppress it (allow rules,
   the same rule's higher-priority types) has passed its end. Suppression and redaction
   merging are then computed from final data only.
4. Text is released up to ``p``: no undecided finding of a text-altering rule (redact,
   block, allow) can start before ``p``, no pending one starts before it, and ``p`` is not
   inside a redaction. Flag-only rules never hold text back; their detectors run in
   batches of ``LAZY_CHARS`` and their findings simply become final a little later.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .detectors import Detector
from .normalize import View, is_starter, last_segment_start, normalise
from .regex_tools import Utf8Text
from .types import Finding, RuleSpec

INF = float("inf")
ALTERING = frozenset({"redact", "block", "allow"})
# While streaming, detectors of flag-only rules run once this many new (normalised)
# characters have arrived, not on every chunk: no released text waits for them, and a
# detector chain decides the same matches whenever it runs (point 2 below), so their
# findings are unchanged, only up to this many characters later (all by ``finish``).
LAZY_CHARS = 1024


@dataclass
class CompiledRule:
    """A validated rule with its detectors (index = position in the policy)."""

    index: int
    spec: RuleSpec
    detectors: list[Detector]
    allow: frozenset[str]
    max_chars: int | None = None

    @property
    def altering(self) -> bool:
        """Whether the rule can change or stop released text (so it may hold text back)."""
        return self.spec.action in ALTERING


@dataclass
class Raw:
    """A match before suppression/merging. ``open`` = max_length finding still growing."""

    key: tuple[int, int, int, str]
    rule: CompiledRule
    kind: str
    priority: int
    start: int
    end: int
    open: bool = False

    @property
    def action(self) -> str:
        """The rule's action."""
        return self.rule.spec.action


def finding_of(raw: Raw, stage: str) -> Finding:
    """Turn a resolved raw match into a public finding."""
    spec = raw.rule.spec
    return Finding(
        rule_id=spec.id,
        rule_name=spec.name,
        kind=raw.kind,
        action=spec.action,
        stage=stage,
        start=raw.start,
        end=raw.end,
        severity=spec.severity,
    )


def render(text: str, offset: int, spans: Sequence[tuple[tuple[Any, ...], int, int, str]]) -> str:
    """Replace spans (sort key, start, end, kind) in ``text`` (which starts at ``offset``).

    Overlapping spans merge into one ``[REDACTED:<kind>]`` named after the span that
    starts first (the longest on a tie); touching (non-overlapping) spans stay separate.
    """
    out: list[str] = []
    pos = offset
    group_end = -1
    for _key, start, end, kind in sorted(spans, key=lambda s: (s[1], -s[2], s[0])):
        if start < group_end:
            if end > group_end:
                group_end = end
                pos = end
            continue
        out.append(text[pos - offset : start - offset])
        out.append(f"[REDACTED:{kind}]")
        group_end = end
        pos = end
    out.append(text[pos - offset :])
    return "".join(out)


class Session:
    """Incremental scan of one text for one stage."""

    def __init__(
        self, rules: Sequence[CompiledRule], stage: str, *, stop_on_block: bool = True
    ) -> None:
        # A stream stops releasing at a block; a whole-text scan still returns the full
        # redacted text (the caller decides what a block means, e.g. the check endpoint).
        self.stop_on_block = stop_on_block
        self.rules = list(rules)
        self.stage = stage
        self.dets = [
            (r, d) for r in self.rules for d in r.detectors if d.stages is None or stage in d.stages
        ]
        self.q = [0] * len(self.dets)
        self.nbase = {"cased": 0, "folded": 0}
        self.orig = ""
        self.base = 0
        self.total = 0
        self.released = 0
        self.finished = False
        self.pending: list[Raw] = []
        self.known: list[Raw] = []  # sorted by key: raw findings kept for resolution
        self.max_raw_len = 0
        self.final: list[tuple[tuple[Any, ...], Finding]] = []
        self.redacts: list[Raw] = []
        self.blocked: Finding | None = None
        self._length_raw: dict[int, Raw] = {}
        self._utf8: dict[str, Utf8Text] = {}

    # --- public ---------------------------------------------------------------------
    def feed(self, chunk: str, *, step: bool = True) -> str:
        """Add text; return newly releasable (redacted) text."""
        if self.finished:
            raise RuntimeError("stream already finished")
        if self.blocked is not None and self.stop_on_block:
            return ""  # nothing more will be released; don't buffer it either
        self.orig += chunk
        self.total += len(chunk)
        return self._step() if step else ""

    def finish(self) -> str:
        """Declare the end of text and release everything that is left."""
        self.finished = True
        return self._step()

    def findings(self) -> list[Finding]:
        """Final findings in whole-text order."""
        return [f for _k, f in sorted(self.final, key=lambda kf: kf[0])]

    # --- one step -------------------------------------------------------------------
    def _step(self) -> str:
        if self.blocked is not None and self.stop_on_block:
            return ""
        avail = self.total if self.finished else self.base + last_segment_start(self.orig)
        cased, folded = normalise(self.orig[: avail - self.base])
        views = {"cased": cased, "folded": folded}
        # Each view is encoded for RE2 at most once per step, not once per detector.
        self._utf8 = {}
        f_alter, f_all = INF, INF
        for i, (rule, det) in enumerate(self.dets):
            view = views[det.view]
            if not rule.altering and not self.finished:
                local_q = self.q[i] - self.nbase[det.view]
                if len(view.text) - local_q < LAZY_CHARS:
                    # Flag-only: nothing waits for it, so run it in batches (see below).
                    f_all = min(f_all, self.base + view.orig_start(local_q))
                    continue
            frontier = self._run(i, rule, det, view, avail)
            f_all = min(f_all, frontier)
            if rule.altering:
                f_alter = min(f_alter, frontier)
        self._update_lengths()
        if self.finished:
            f_alter = f_all = INF
        self._finalise(f_alter, f_all)
        if self.blocked is None and self._check_blocked(f_alter) and self.stop_on_block:
            return ""
        out = self._release(min(f_alter, avail))
        self._trim(views)
        return out

    def _run(self, i: int, rule: CompiledRule, det: Detector, view: View, avail: int) -> float:
        """Advance detector ``i``'s chain; return its frontier in original offsets."""
        text = view.text
        n = len(text)
        q = self.q[i] - self.nbase[det.view]
        if self.finished:
            # Whole remaining text is known: a plain finditer chain is the definition
            # (the gate's chain is the same chain, found faster).
            chain = (
                det.finditer(text, q)
                if det.gate is None
                else det.gate.matches(det.search, text, self._encoded(det.view, text), q)
            )
            for m in chain:
                self._accept(rule, det, view, m)
            self.q[i] = self.nbase[det.view] + n
            return avail
        if det.prefix is None:
            # No prefix language: anything in the last max_width chars may still match.
            undecided = max(q, n - det.max_width)
        else:
            utf8 = self._encoded(det.view, text)
            undecided = utf8.char_offset(det.prefix.leftmost(utf8.data, utf8.byte_offset(q)))
        pos = q
        while True:
            m = det.search(text, pos)
            if m is None or m.start() >= undecided:
                new_q = max(pos, undecided)
                break
            s, e = m.span()
            if e + det.lookahead > n:
                new_q = s  # the validator needs text that has not arrived yet
                break
            self._accept(rule, det, view, m)
            pos = e
        self.q[i] = self.nbase[det.view] + new_q
        return self.base + view.orig_start(new_q) if new_q < n else avail

    def _encoded(self, name: str, text: str) -> Utf8Text:
        """View ``name`` (whose text is ``text``) encoded for RE2, once per step."""
        utf8 = self._utf8.get(name)
        if utf8 is None:
            utf8 = self._utf8[name] = Utf8Text(text)
        return utf8

    def _accept(self, rule: CompiledRule, det: Detector, view: View, m: Any) -> None:
        """Validate a decided chain match and record it as a raw finding."""
        s, e = m.span()
        end = det.validate(view.text, m) if det.validate is not None else e
        if end is not None and end > s and self._not_allowed(rule, view.text[s:end]):
            self._add_raw(rule, det, *view.span(s, end))

    @staticmethod
    def _not_allowed(rule: CompiledRule, value: str) -> bool:
        return not rule.allow or value.casefold().strip() not in rule.allow

    def _add_raw(self, rule: CompiledRule, det: Detector, start: int, end: int) -> None:
        start += self.base
        end += self.base
        raw = Raw((start, end, rule.index, det.kind), rule, det.kind, det.priority, start, end)
        self.pending.append(raw)
        insort(self.known, raw, key=lambda r: r.key)
        self.max_raw_len = max(self.max_raw_len, end - start)

    def _update_lengths(self) -> None:
        """max_length rules: one open-ended finding from max_chars to the end of text."""
        for rule in self.rules:
            limit = rule.max_chars
            if limit is None or self.total <= limit:
                continue
            raw = self._length_raw.get(rule.index)
            if raw is None:
                raw = Raw(
                    (limit, 0, rule.index, "max_length"),
                    rule,
                    "max_length",
                    0,
                    limit,
                    self.total,
                    open=True,
                )
                self._length_raw[rule.index] = raw
                self.pending.append(raw)
            raw.end = self.total
            if self.finished:
                raw.open = False
                raw.key = (limit, self.total, rule.index, "max_length")

    # --- resolution -----------------------------------------------------------------
    def _finalise(self, f_alter: float, f_all: float) -> None:
        still: list[Raw] = []
        ready: list[Raw] = []
        for raw in self.pending:
            limit = f_alter if raw.rule.altering else f_all
            if not raw.open and (self.finished or raw.end <= limit):
                ready.append(raw)
            else:
                still.append(raw)
        self.pending = still
        for raw in ready:
            if raw.action == "allow" or self._suppressed(raw):
                continue
            finding = finding_of(raw, self.stage)
            self.final.append((raw.key, finding))
            if raw.action == "redact":
                self.redacts.append(raw)
        horizon = min([f_all] + [r.start for r in self.pending])
        self._prune_known(horizon)

    def _suppressed(self, raw: Raw) -> bool:
        """Allow-listed (covered by an allow match) or shadowed by a stronger overlapping
        type of the same rule. Only raw (unresolved) matches suppress: no chains."""
        lo = bisect_left(self.known, raw.start - self.max_raw_len, key=lambda r: r.start)
        for other in self.known[lo:]:
            if other.start >= raw.end:
                break
            if other is raw:
                continue
            if other.action == "allow":
                if other.start <= raw.start and raw.end <= other.end:
                    return True
            elif (
                other.rule is raw.rule
                and other.priority < raw.priority
                and other.start < raw.end
                and raw.start < other.end
            ):
                return True
        return False

    def _prune_known(self, horizon: float) -> None:
        # Unresolved matches all start at or after ``horizon``; older ones can't overlap.
        pend = {id(r) for r in self.pending}
        self.known = [r for r in self.known if id(r) in pend or r.end > horizon]

    def _check_blocked(self, f_alter: float) -> bool:
        """Set ``blocked`` once the first blocking finding is certain."""
        candidates = [k for k, f in self.final if f.action == "block"]
        candidates += [r.key for r in self.pending if r.open and r.action == "block"]
        if not candidates:
            return False
        first = min(candidates)
        if first[0] >= f_alter:
            return False  # an undiscovered block finding could still start earlier
        for raw in self.pending:
            if raw.action == "block" and not raw.open and raw.start <= first[0]:
                return False  # an earlier block may still win
        for key, finding in self.final:
            if key == first:
                self.blocked = finding
                return True
        raw = next(r for r in self.pending if r.key == first)
        self.blocked = finding_of(raw, self.stage)
        return True

    # --- release --------------------------------------------------------------------
    def _release(self, limit: float) -> str:
        p = self.total if self.finished else int(min(limit, self.total))
        for raw in self.pending:
            if raw.action in ("redact", "block"):
                p = min(p, raw.start)
        changed = True
        while changed:  # never cut through a redaction
            changed = False
            for raw in self.redacts:
                if raw.start < p < raw.end:
                    p = raw.start
                    changed = True
        if p <= self.released:
            return ""
        spans = [(r.key, r.start, r.end, r.kind) for r in self.redacts if r.start < p]
        out = render(self.orig[self.released - self.base : p - self.base], self.released, spans)
        self.released = p
        self.redacts = [r for r in self.redacts if r.end > p]
        return out

    def _trim(self, views: dict[str, View]) -> None:
        """Drop original text no longer needed for output, context or matching."""
        keep = self.released
        for i, (_rule, det) in enumerate(self.dets):
            view = views[det.view]
            local = max(0, self.q[i] - self.nbase[det.view] - det.lookbehind)
            keep = min(keep, self.base + view.orig_start(min(local, len(view.text))))
        cut = keep - self.base
        while 0 < cut < len(self.orig) and not is_starter(self.orig[cut]):
            cut -= 1  # only cut at a segment boundary
        if cut <= 0:
            return
        for name, view in views.items():
            self.nbase[name] += view.count_before(cut)
        self.orig = self.orig[cut:]
        self.base += cut
