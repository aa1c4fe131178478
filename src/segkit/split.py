"""Stratified, grouped, stable splits: the pure core of ``segkit split``.

Input is plain data: the class ids present in each item (a VOC stem), an optional
group per item, the wanted fraction per split, a seed and the previous assignment.
Output is a split name per item. No files, no printing.

Everything happens over *groups* (a group's classes are the union of its items'
classes; a group always lands in one split whole), in five passes:

1. **Kept**: groups holding items of the previous assignment stay where they were;
   their new items follow them (the split most of the group's kept items are in).
2. **Coverage**: every class carried by at least as many groups as there are splits
   gets one group in each split that still lacks it, least slack first. This is a
   depth-first search with a work budget, so a greedy choice cannot use up the last
   group a rarer class needed: first within the targets; if that fails, again with
   rounding up (below); when that fails too it falls back to the greedy path and
   reports what stayed uncovered. A pseudo-class that every group carries keeps
   splits from ending up empty.
3. **Iterative stratification** (Sechidis, Tsoumakas & Vlahavas, 2011) for the rest:
   take the class with the fewest unplaced groups and send each of its groups to the
   split that lacks most images of that class.
4. Groups without any class go wherever they fit.
5. **Balance**: coverage favours small groups, so big groups come last and may fit
   nowhere (groups of 6, 2 and 1 for targets 4.9 and 4.1 came out 2 and 7). The
   placed groups (not the kept ones) are repacked largest first, each to the split
   furthest below target, when that is closer to the targets, covers as much and
   spreads each class no worse; then single groups move, or two swap, between splits
   while that lowers ``sum |target - images|`` and no split loses the last group of a
   class coverage counts. With one class this is never further from the targets than
   plain largest-first packing (when that leaves no split empty) nor than the passes
   before it.

Sizes are a hard limit in every pass: a group goes only to a split where it *fits*
(the split's target minus its images is at least the group's size); if it fits
nowhere, it goes to the split furthest below target. Coverage alone may *round up*:
it may take a split over its target as long as the excess summed over all splits
stays below the largest group (one image for ungrouped items), so the splits under
target lack less than that too. Whatever the order, this keeps every split within one
group of its target: ``|images - fraction * total| < largest group size`` (for
ungrouped items: the count is the target rounded up or down). So coverage gives way
to sizes: a class that could only reach a small split by overfilling it further is
listed in ``SplitResult.uncovered`` rather than placed. The one exception: a split
that no group fits still gets the smallest group (the split with the least room
first), because an empty split is worse than an oversized one. Balancing keeps the
bound: largest-first packing to the split furthest below target meets it by itself,
and a move or swap takes fewer images than the largest group from a split over its
target to one under it, so neither ends up further off than that unless it was.

Randomness comes only from a per-group priority, the SHA-256 of the seed and the
group id, so results depend on neither dict order nor ``PYTHONHASHSEED``, and adding a
group does not reshuffle the order of the others.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from segkit.errors import DatasetError, EmptySplitError, OptionError

#: Pseudo-class every group carries: covering it in each split means no split is empty.
_ANY = -1
#: Groups each coverage search (within the targets, then rounding up) may examine
#: before it gives up (bounds each to about a second however hard the instance).
DEFAULT_SEARCH_BUDGET = 300_000
#: Pairs of group sizes the balancing pass may examine (bounds it to well under a
#: second; it usually ends after a few steps).
DEFAULT_BALANCE_BUDGET = 1_000_000
#: Fractions are read as rationals with at most this denominator (0.1 is 1/10).
_MAX_DENOMINATOR = 1_000_000


@dataclass(frozen=True)
class SplitResult:
    """The outcome of :func:`assign_splits`.

    ``assignment`` maps every item to its split name (items in sorted order);
    ``uncovered`` lists ``(class_id, split)`` pairs where a class present in at least
    as many groups as there are splits is still missing; ``conflicts`` lists groups
    whose kept items already sat in more than one split (kept as they were).
    """

    assignment: dict[str, str]
    split_names: tuple[str, ...]
    group_of: dict[str, str]
    kept: int
    placed: int
    dropped: int
    uncovered: tuple[tuple[int, str], ...]
    conflicts: tuple[str, ...]

    def members(self, split: str) -> list[str]:
        """Items assigned to ``split``, sorted."""
        return [item for item, name in self.assignment.items() if name == split]

    def groups_in(self, split: str) -> int:
        """Number of distinct groups in ``split``."""
        return len({self.group_of[item] for item in self.members(split)})


@dataclass(frozen=True)
class SplitStats:
    """Size and class content of one split."""

    name: str
    images: int
    groups: int
    target: float
    pixels: dict[int, int]
    images_with: dict[int, int]


def group_priority(seed: int, group: str) -> int:
    """The seeded tie-break rank of a group: stable across runs, machines and Python versions.

    >>> group_priority(0, "a") == group_priority(0, "a") != group_priority(1, "a")
    True
    """
    digest = hashlib.sha256(f"{seed}\x00{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _check_fractions(fractions: Mapping[str, float]) -> list[Fraction]:
    if not fractions:
        raise OptionError("no splits requested")
    for name, value in fractions.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 < value < 1):
            raise OptionError(f"fraction of split {name!r} must be in (0, 1), got {value!r}")
    if len(fractions) > 1 and abs(sum(fractions.values()) - 1) > 1e-6:
        raise OptionError(f"split fractions must add up to 1, got {sum(fractions.values()):g}")
    rational = [Fraction(value).limit_denominator(_MAX_DENOMINATOR) for value in fractions.values()]
    total = sum(rational)
    return [value / total for value in rational]


class _Placer:
    """Mutable state of one split computation (groups are indices in sorted id order)."""

    def __init__(
        self,
        *,
        labels: list[tuple[int, ...]],
        counts: list[dict[int, int]],
        sizes: list[int],
        priorities: list[int],
        fractions: list[Fraction],
    ) -> None:
        self.labels = labels
        self.counts = counts
        self.k = len(fractions)
        self.fractions = [float(value) for value in fractions]
        total = sum(sizes)
        # Integer arithmetic: targets and sizes scaled by the fractions' common denominator.
        scale = math.lcm(*(value.denominator for value in fractions))
        self.scale = scale
        self.shares = [int(value * scale) for value in fractions]
        self.sizes = [size * scale for size in sizes]
        self.deficit = [share * total for share in self.shares]
        self.split_of = [-1] * len(sizes)
        self.order = sorted(range(len(sizes)), key=lambda g: (priorities[g], g))
        self.rank = [0] * len(sizes)
        for position, g in enumerate(self.order):
            self.rank[g] = position
        self.groups_with: dict[int, list[int]] = {}
        for g in self.order:
            for label in (*labels[g], _ANY):
                self.groups_with.setdefault(label, []).append(g)
        self.present: list[Counter[int]] = [Counter() for _ in range(self.k)]
        # Kept in step by assign/unassign: splits lacking each class, and per split the
        # number of `tracked` classes it lacks (the classes the current search covers).
        self.lacking_splits: Counter[int] = Counter(dict.fromkeys(self.groups_with, self.k))
        self.tracked: frozenset[int] = frozenset()
        self.lacking = [0] * self.k
        self.unplaced: Counter[int] = Counter(
            {label: len(groups) for label, groups in self.groups_with.items()}
        )
        # Classes coverage must reach in every split: carried by at least k groups.
        self.stratified = sorted(
            (label for label, groups in self.groups_with.items() if len(groups) >= self.k),
            key=lambda label: (label == _ANY, label),
        )
        self.stratified_set = set(self.stratified)
        # Static bounds for pruning the search: no group covers more classes than
        # `most_covered`, none is smaller than `smallest`.
        self.most_covered = max(
            (sum(1 for c in ls if c in self.stratified_set) for ls in labels), default=0
        )
        self.smallest = min(self.sizes)
        self.largest = max(self.sizes)
        # Images over target, summed over the splits (scaled). Coverage may overfill
        # (`relaxed`) while this stays below the largest group: see `fits`.
        self.over = 0
        self.relaxed = False
        self.work = 0

    # -- bookkeeping -------------------------------------------------------------------
    def assign(self, g: int, j: int) -> None:
        self.split_of[g] = j
        self.over -= max(0, -self.deficit[j])
        self.deficit[j] -= self.sizes[g]
        self.over += max(0, -self.deficit[j])
        for label in (*self.labels[g], _ANY):
            if not self.present[j][label]:
                self.lacking_splits[label] -= 1
                self.lacking[j] -= label in self.tracked
            self.present[j][label] += 1
            self.unplaced[label] -= 1

    def unassign(self, g: int) -> None:
        j = self.split_of[g]
        self.split_of[g] = -1
        self.over -= max(0, -self.deficit[j])
        self.deficit[j] += self.sizes[g]
        self.over += max(0, -self.deficit[j])
        for label in (*self.labels[g], _ANY):
            self.present[j][label] -= 1
            self.unplaced[label] += 1
            if not self.present[j][label]:
                self.lacking_splits[label] += 1
                self.lacking[j] += label in self.tracked

    def track(self, labels: Collection[int]) -> None:
        """Count, per split, how many of ``labels`` (other than the pseudo-class) it lacks."""
        self.tracked = frozenset(label for label in labels if label != _ANY)
        self.lacking = [
            sum(1 for label in self.tracked if not self.present[j][label]) for j in range(self.k)
        ]

    def fits(self, g: int, j: int) -> bool:
        return self.sizes[g] <= self.room(j)

    def room(self, j: int) -> int:
        """How much more split ``j`` may take (scaled; may be negative).

        Strictly, up to its target. Relaxed (coverage only), also beyond it as long as
        the summed excess of all splits stays below the largest group: then no split
        ends up a whole group over its target, and none a whole group under it either,
        since the splits under target share exactly that excess.
        """
        if not self.relaxed:
            return self.deficit[j]
        return max(self.deficit[j], max(self.deficit[j], 0) + self.largest - 1 - self.over)

    def missing(self, label: int) -> int:
        return self.lacking_splits[label]

    # -- pass 2: coverage --------------------------------------------------------------
    def _next_need(
        self, labels: Sequence[int], skip: Collection[tuple[int, int]], prune: bool
    ) -> tuple[int, int] | bool | None:
        """The (class, split) to cover next; ``None`` when done, ``False`` on a dead end."""
        self.work += len(labels)
        if prune and self.most_covered:
            # The classes a split lacks need at least this many more groups; if even the
            # smallest groups would overfill it, no placement below here can succeed.
            for j in range(self.k):
                groups_needed = -(-self.lacking[j] // self.most_covered)
                if groups_needed * self.smallest > self.room(j):
                    return False
        best: tuple[tuple[int, ...], tuple[int, int]] | None = None
        for label in labels:
            missing = self.lacking_splits[label]
            if not missing:
                continue
            slack = self.unplaced[label] - missing
            if prune and slack < 0:
                return False
            for j in range(self.k):
                if self.present[j][label] or (label, j) in skip:
                    continue
                # Least slack first, then the split with the least room left.
                key = (slack, self.unplaced[label], label == _ANY, label, self.deficit[j], j)
                if best is None or key < best[0]:
                    best = (key, (label, j))
        return None if best is None else best[1]

    def _gain(self, g: int, j: int) -> int:
        """Classes to cover that group ``g`` would bring to split ``j``."""
        return sum(1 for c in self.labels[g] if c in self.stratified_set and not self.present[j][c])

    def _candidates(self, label: int, j: int) -> list[int]:
        """Unplaced groups carrying ``label`` that fit split ``j``, best first."""
        scored = []
        self.work += len(self.groups_with[label])
        for g in self.groups_with[label]:
            if self.split_of[g] >= 0 or not self.fits(g, j):
                continue
            waste = gain = 0
            for other in (*self.labels[g], _ANY):
                if other not in self.stratified_set:
                    continue
                if self.present[j][other]:
                    # Spends a group of a class that is already in j; harmful only if
                    # that class has no group to spare for the splits still lacking it.
                    missing = self.missing(other)
                    if other != label and missing and self.unplaced[other] - missing <= 0:
                        waste += 1
                else:
                    gain += 1
            scored.append((waste, -gain, self.sizes[g], self.rank[g], g))
        scored.sort()
        return [entry[-1] for entry in scored]

    def _search(self, labels: Sequence[int], budget: int) -> bool:
        """Depth-first search for a placement covering ``labels`` in every split.

        Returns ``False`` with every search assignment undone when there is none, or
        when ``budget`` (groups examined) runs out first.
        """
        self.track(labels)
        frames: list[list] = []  # [split, candidate groups, index of the next to try]
        while True:
            need = self._next_need(labels, (), prune=True)
            if need is None:
                return True
            if need is not False:
                label, j = need  # type: ignore[misc]
                frames.append([j, self._candidates(label, j), 0])
            while frames:  # try the next candidate, backtracking where none is left
                j, candidates, index = frames[-1]
                if index:
                    self.unassign(candidates[index - 1])
                if index < len(candidates) and self.work < budget:
                    self.work += 1
                    self.assign(candidates[index], j)
                    frames[-1][2] = index + 1
                    break
                frames.pop()
            else:
                return False

    def _greedy(self, labels: Sequence[int]) -> None:
        """Cover what can be covered, skipping (class, split) pairs with no fitting group."""
        self.track(labels)
        dead: set[tuple[int, int]] = set()
        while (need := self._next_need(labels, dead, prune=False)) is not None:
            label, j = need  # type: ignore[misc]
            candidates = self._candidates(label, j)
            if candidates:
                self.assign(candidates[0], j)
            else:
                dead.add((label, j))

    def cover(self, budget: int) -> None:
        # Classes short of groups from the start (their groups are kept elsewhere) cannot
        # be covered whatever we do; leaving them out keeps the search from failing at once.
        hopeful = [
            label for label in self.stratified if self.unplaced[label] >= self.missing(label)
        ]
        # First within the targets; failing that, rounding up (see `room`) and with a
        # fresh budget; failing that too, greedily as far as it goes.
        if not self._search(hopeful, budget):
            self.relaxed = True
            self.work = 0
            if not self._search(hopeful, budget):
                self._greedy(hopeful)
        self.relaxed = True
        self._greedy(self.stratified)
        self.relaxed = False
        # Nothing fits a split still empty: overfill it with the smallest group (the most
        # useful one first), the splits with the least room first, so that a small split
        # does not get a big group because a bigger split took the small one.
        for j in sorted(range(self.k), key=lambda j: (self.deficit[j], j)):
            if not self.present[j][_ANY]:
                spare = [g for g in self.order if self.split_of[g] < 0]
                if spare:
                    self.assign(min(spare, key=lambda g: (self.sizes[g], -self._gain(g, j))), j)

    # -- passes 3 and 4: iterative stratification --------------------------------------
    def stratify(self) -> None:
        totals: Counter[int] = Counter()
        for count in self.counts:
            totals.update(count)
        wanted = [{label: share * n for label, n in totals.items()} for share in self.fractions]
        for g, j in enumerate(self.split_of):
            if j >= 0:
                for label, n in self.counts[g].items():
                    wanted[j][label] -= n

        def place(g: int, label: int | None) -> None:
            fitting = [j for j in range(self.k) if self.fits(g, j)]
            if fitting:
                if label is None:
                    j = max(fitting, key=lambda j: (self.deficit[j], -j))
                else:
                    j = max(fitting, key=lambda j: (wanted[j][label], self.deficit[j], -j))
            else:
                j = max(range(self.k), key=lambda j: (self.deficit[j], -j))
            self.assign(g, j)
            for other, n in self.counts[g].items():
                wanted[j][other] -= n

        while True:
            open_labels = [
                label
                for label in sorted(self.groups_with)
                if label != _ANY and self.unplaced[label]
            ]
            if not open_labels:
                break
            label = min(open_labels, key=lambda label: (self.unplaced[label], label))
            for g in self.groups_with[label]:
                if self.split_of[g] < 0:
                    place(g, label)
        for g in self.order:
            if self.split_of[g] < 0:
                place(g, None)

    def by_size(self, groups: Sequence[int]) -> list[int]:
        """``groups`` largest first (then by priority), as bin packing places them."""
        return sorted(groups, key=lambda g: (-self.sizes[g], self.rank[g]))

    # -- pass 5: balance sizes ---------------------------------------------------------
    def balance(self, fixed: Sequence[bool], budget: int) -> None:
        """Repack, then move or swap groups while that brings sizes closer to the targets.

        The passes before place big groups last, when they may fit nowhere (groups of 6,
        2 and 1 for targets 4.9 and 4.1 became 2 and 7); this pass then finds 6 and 3.
        First :meth:`_try_packing`; then each step takes the move of one group, or the
        swap of two, that most reduces ``sum |target - images|`` over the splits, never
        moving a ``fixed`` (kept) group nor taking from a split the last group of a class
        coverage counts (or its last group at all). Every step lowers the sum, so the
        loop ends; ``budget`` (pairs of group sizes and groups examined) bounds it
        anyway. A step never takes a split a whole group off its target that was not
        already: it moves images only from a split over its target to one under it, by
        less than the largest group.
        """
        self._try_packing(fixed)
        # Per split, the movable groups by size (in priority order): a step needs only
        # the sizes, then one group of each size that coverage lets go.
        buckets: list[dict[int, list[int]]] = [{} for _ in range(self.k)]
        for g in self.order:
            if not fixed[g]:
                buckets[self.split_of[g]].setdefault(self.sizes[g], []).append(g)
        work = 0
        while work < budget:
            steps = []
            for a in range(self.k):
                for b in range(self.k):
                    if a == b or not buckets[a]:
                        continue
                    da, db = self.deficit[a], self.deficit[b]
                    if da >= 0 or db <= 0:
                        continue  # only a split over target gains by giving images away
                    here = abs(da) + abs(db)
                    work += len(buckets[a]) * (1 + len(buckets[b]))
                    for s in buckets[a]:
                        gain = here - abs(da + s) - abs(db - s)
                        if gain > 0:
                            steps.append((-gain, s, 0, a, b))
                        for t in buckets[b]:
                            if t < s:
                                gain = here - abs(da + s - t) - abs(db - s + t)
                                if gain > 0:
                                    steps.append((-gain, s + t, t, a, b))
            steps.sort()
            for _, total, t, a, b in steps:
                work += len(buckets[a][total - t]) * len(buckets[b].get(t, (0,)))
                pair = self._movable_pair(buckets, a, total - t, b, t)
                if pair is not None or work >= budget:
                    break
            else:
                return
            if pair is None:
                return
            for g, j in ((pair[0], b), (pair[1], a)):
                if g >= 0:
                    source = self.split_of[g]
                    bucket = buckets[source][self.sizes[g]]
                    bucket.remove(g)
                    if not bucket:
                        del buckets[source][self.sizes[g]]
                    self.unassign(g)
                    self.assign(g, j)
                    moved = buckets[j].setdefault(self.sizes[g], [])
                    moved.append(g)
                    moved.sort(key=self.rank.__getitem__)

    def _covered(self) -> set[tuple[int, int]]:
        return {
            (label, j) for j in range(self.k) for label in self.stratified if self.present[j][label]
        }

    def _class_deviation(self) -> int:
        """``sum |share * images with the class - images with it in the split|`` (scaled)."""
        per_split: list[Counter[int]] = [Counter() for _ in range(self.k)]
        for g, j in enumerate(self.split_of):
            per_split[j].update(self.counts[g])
        totals: Counter[int] = sum(per_split, Counter())
        return sum(
            abs(share * n - self.scale * per_split[j][label])
            for j, share in enumerate(self.shares)
            for label, n in totals.items()
        )

    def _try_packing(self, fixed: Sequence[bool]) -> None:
        """Repack the movable groups by plain bin packing, ignoring classes: largest first,
        each to the split furthest below target. Kept only when it lands strictly closer
        to the targets, covers every class in every split the placement so far covers,
        and spreads each class no worse (with one class, then, whenever it is closer)."""
        before = list(self.split_of)
        deviation = sum(map(abs, self.deficit))
        covered = self._covered()
        class_deviation = self._class_deviation()
        movable = [g for g in self.by_size(self.order) if not fixed[g]]
        for g in movable:
            self.unassign(g)
        for g in movable:
            self.assign(g, max(range(self.k), key=lambda j: (self.deficit[j], -j)))
        if (
            sum(map(abs, self.deficit)) < deviation
            and covered <= self._covered()
            and self._class_deviation() <= class_deviation
        ):
            return
        for g in movable:
            self.unassign(g)
        for g in movable:
            self.assign(g, before[g])

    def _movable_pair(
        self, buckets: list[dict[int, list[int]]], a: int, s: int, b: int, t: int
    ) -> tuple[int, int] | None:
        """A group of size ``s`` in split ``a`` and one of size ``t`` in ``b`` (``-1`` for
        none when ``t`` is 0) that may change places without a split losing the last
        group of a covered class; ``None`` when there is no such pair."""

        def sole(g: int, j: int) -> frozenset[int]:
            # Covered classes (and the pseudo-class) that only g brings to split j.
            return frozenset(
                label
                for label in (*self.labels[g], _ANY)
                if label in self.stratified_set and self.present[j][label] == 1
            )

        if not t:
            for g in buckets[a][s]:
                if not sole(g, a):
                    return g, -1
            return None
        # Every group carries the pseudo-class, so the other group always replaces it.
        others = [(h, sole(h, b) - {_ANY}) for h in buckets[b][t]]
        for g in buckets[a][s]:
            needs = sole(g, a) - {_ANY}
            for h, h_needs in others:
                if needs.issubset(self.labels[h]) and h_needs.issubset(self.labels[g]):
                    return g, h
        return None


def assign_splits(
    classes: Mapping[str, Collection[int]],
    fractions: Mapping[str, float],
    *,
    seed: int = 0,
    groups: Mapping[str, str] | None = None,
    previous: Mapping[str, str] | None = None,
    search_budget: int = DEFAULT_SEARCH_BUDGET,
) -> SplitResult:
    """Assign every item to a split: stratified by class, grouped, stable, seeded.

    ``classes`` maps item id → class ids present (ints ≥ 0; leave out the ignore id);
    ``fractions`` maps split name → wanted share, in order (ties go to earlier splits),
    adding up to 1; ``groups`` maps item id → group id (default: every item alone);
    ``previous`` maps item id → split name of an earlier run: those items keep their
    split, items it names that are gone are dropped.

    >>> result = assign_splits({"a": [1], "b": [1], "c": [2], "d": [1, 2]},
    ...                        {"train": 0.5, "val": 0.5}, seed=0)
    >>> sorted(Counter(result.assignment.values()).items())
    [('train', 2), ('val', 2)]
    >>> result.uncovered
    ()
    """
    names = tuple(fractions)
    shares = _check_fractions(fractions)
    items = sorted(classes)
    if not items:
        raise DatasetError("no images to split")
    for item in items:
        bad = [c for c in classes[item] if not isinstance(c, int) or c < 0]
        if bad:
            raise DatasetError(f"{item}: class ids must be integers >= 0, got {bad}")
    if groups is None:
        group_of = {item: item for item in items}
    else:
        lacking = [item for item in items if item not in groups]
        if lacking:
            raise DatasetError(f"no group for {len(lacking)} items: {', '.join(lacking[:5])}")
        group_of = {item: str(groups[item]) for item in items}
    previous = dict(previous or {})
    unknown = sorted({name for name in previous.values() if name not in names})
    if unknown:
        raise OptionError(
            f"the previous split has items in {', '.join(map(repr, unknown))}, which this "
            f"run does not make (splits: {', '.join(names)})"
        )

    members: dict[str, list[str]] = {}
    for item in items:
        members.setdefault(group_of[item], []).append(item)
    if len(members) < len(names):
        raise DatasetError(
            f"{len(members)} group(s) of images cannot fill {len(names)} splits "
            f"({', '.join(names)}); add images or use fewer splits"
        )
    # Placement units are the groups, except that a group whose kept items already sit
    # in several splits is cut along those splits (its new items join the largest part),
    # so the sizes and classes each split starts with are the real ones.
    index_of = {name: j for j, name in enumerate(names)}
    conflicts = []
    unit_of = dict(group_of)
    for gid, group in members.items():
        held = Counter(previous[item] for item in group if item in previous)
        if len(held) > 1:
            conflicts.append(gid)
            largest = min(held, key=lambda name: (-held[name], index_of[name]))
            for item in group:
                unit_of[item] = f"{gid}\x00{previous.get(item, largest)}"
    units: dict[str, list[str]] = {}
    for item in items:
        units.setdefault(unit_of[item], []).append(item)
    unit_ids = sorted(units)
    placer = _Placer(
        labels=[tuple(sorted({c for i in units[u] for c in classes[i]})) for u in unit_ids],
        counts=[dict(Counter(c for i in units[u] for c in set(classes[i]))) for u in unit_ids],
        sizes=[len(units[u]) for u in unit_ids],
        priorities=[group_priority(seed, u) for u in unit_ids],
        fractions=shares,
    )
    fixed = [False] * len(unit_ids)
    for g, unit in enumerate(unit_ids):
        held = {previous[item] for item in units[unit] if item in previous}
        if held:
            placer.assign(g, index_of[held.pop()])
            fixed[g] = True
    placer.cover(search_budget)
    for j, name in enumerate(names):
        if not placer.present[j][_ANY]:
            raise EmptySplitError(name)
    placer.stratify()
    placer.balance(fixed, DEFAULT_BALANCE_BUDGET)

    assignment = {
        item: names[placer.split_of[g]] for g, unit in enumerate(unit_ids) for item in units[unit]
    }
    assignment = dict(sorted(assignment.items()))
    uncovered = tuple(
        (label, names[j])
        for label in placer.stratified
        if label != _ANY
        for j in range(len(names))
        if not placer.present[j][label]
    )
    kept = sum(1 for item in items if item in previous)
    return SplitResult(
        assignment=assignment,
        split_names=names,
        group_of=group_of,
        kept=kept,
        placed=len(items) - kept,
        dropped=sum(1 for item in previous if item not in classes),
        uncovered=uncovered,
        conflicts=tuple(sorted(conflicts)),
    )


def split_stats(
    result: SplitResult,
    pixels: Mapping[str, Mapping[int, int]],
    fractions: Mapping[str, float],
) -> list[SplitStats]:
    """Per split: images, groups, wanted fraction, labelled pixels and images per class.

    ``pixels`` maps item id → {class id: pixel count}; items it lacks count as empty.
    """
    stats = []
    for name in result.split_names:
        members = result.members(name)
        pixel_sum: Counter[int] = Counter()
        with_class: Counter[int] = Counter()
        for item in members:
            counts = pixels.get(item, {})
            pixel_sum.update(counts)
            with_class.update(c for c, n in counts.items() if n > 0)
        stats.append(
            SplitStats(
                name=name,
                images=len(members),
                groups=result.groups_in(name),
                target=float(fractions[name]),
                pixels=dict(sorted(pixel_sum.items())),
                images_with=dict(sorted(with_class.items())),
            )
        )
    return stats
