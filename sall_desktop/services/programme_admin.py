"""Programme → Set up double grading…: what a QA lead reads and changes, Qt-free.

One read (:func:`read_setup`) gives the dialog everything it shows: the routing rules, each
grader's roles, the test sets, and whether the signed-in grader may change any of it. The
writes (:func:`apply_setup`, :func:`apply_rules`, :func:`set_role`, :func:`create_test_set`,
:func:`assign_test_set`) check that again on the store's thread before they write, so the rule
holds whoever calls them, and pass the signed-in grader as ``actor``: the store audits each
change under that name (``store/programme_repository.py``, ``store/test_sets_repository.py``).

**Who may change the programme.** While no programme is set up, any signed-in grader may set it
up, and becomes its first QA lead in the same step. Once it is set up, only a grader who holds
the QA role everywhere (scope "", not for one folder) may change its rules, roles and test sets;
everyone else reads it, with one line saying why. A QA lead may not give up the QA role while
nobody else holds it: nobody could change the programme after that.

Call every function here on the store's thread (through a ``StoreExecutor``'s ``submit``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sall_desktop.domain.programme import ProgrammeRole, RoutingRules
from sall_desktop.services.labels_io import REFERENCE_PREFIX
from sall_desktop.services.programme_report import build_test_set_from_finals
from sall_desktop.store import LabelStore

ROLE_ORDER: tuple[ProgrammeRole, ...] = (
    ProgrammeRole.PRIMARY,
    ProgrammeRole.SECONDARY,
    ProgrammeRole.ARBITER,
    ProgrammeRole.QA,
)
ROLE_NAMES: dict[ProgrammeRole, str] = {
    ProgrammeRole.PRIMARY: "Primary",
    ProgrammeRole.SECONDARY: "Second grading",
    ProgrammeRole.ARBITER: "Arbiter",
    ProgrammeRole.QA: "QA lead",
}
"""The roles as the graders' guide and the dialog name them."""

NOT_SIGNED_IN = "Sign in to set up double grading."
READ_ONLY = "The label database is open read-only, so nothing here can be changed."
NOT_SET_UP = "No programme is set up yet: apply the routing rules first."
LAST_QA_LEAD = (
    "You are the programme's only QA lead: make another grader QA lead before you give the role "
    "up, or nobody could change the programme."
)


class ProgrammeAdminError(Exception):
    """A change the signed-in grader may not make, or one that cannot be made; the message says
    why in one line."""


@dataclass(frozen=True, slots=True)
class GraderRoles:
    """One grader's programme roles.

    Attributes:
        name: the grader.
        roles: the roles held everywhere (scope ""), the ones the dialog's table edits.
        scoped: (role, folder) for each role held for one folder only (shown, not edited here;
            ``sall-desktop programme role --scope`` changes them).
    """

    name: str
    roles: frozenset[ProgrammeRole] = frozenset()
    scoped: tuple[tuple[ProgrammeRole, str], ...] = ()

    def scoped_text(self) -> str:
        """The folder-only roles as one line, e.g. "Arbiter in /data/clinic-b"."""
        return "; ".join(f"{ROLE_NAMES[role]} in {scope}" for role, scope in self.scoped)


@dataclass(frozen=True, slots=True)
class TestSetInfo:
    """A test set as the dialog lists it."""

    __test__ = False  # not a pytest test class

    name: str
    size: int
    graders: tuple[str, ...]
    unannounced: bool


@dataclass(frozen=True, slots=True)
class RoleChange:
    """Grant (``granted``) or revoke ``role`` everywhere for ``grader``."""

    grader: str
    role: ProgrammeRole
    granted: bool = True


@dataclass(frozen=True, slots=True)
class ProgrammeSetup:
    """One read of the programme for the signed-in grader ``user``.

    Attributes:
        rules: the routing rules in force, or None while no programme is set up.
        graders: every grader (reference sources left out), by name.
        test_sets: every test set, oldest first.
        may_change: whether ``user`` may change rules, roles and test sets now.
        reason: why not, in one line ("" when they may).
    """

    user: str
    rules: RoutingRules | None
    graders: tuple[GraderRoles, ...]
    test_sets: tuple[TestSetInfo, ...]
    may_change: bool
    reason: str = ""

    @property
    def active(self) -> bool:
        """True once a programme is set up."""
        return self.rules is not None

    def roles_of(self, grader: str) -> frozenset[ProgrammeRole]:
        """The roles ``grader`` holds everywhere."""
        return next((g.roles for g in self.graders if g.name == grader), frozenset())

    @property
    def qa_leads(self) -> tuple[str, ...]:
        """The graders who hold the QA role everywhere."""
        return tuple(g.name for g in self.graders if ProgrammeRole.QA in g.roles)


def read_setup(store: LabelStore, user: str | None) -> ProgrammeSetup:
    """The programme as ``user`` (the signed-in grader, None when nobody is) sees it."""
    rules = store.programme_rules()
    everywhere: dict[str, set[ProgrammeRole]] = {}
    scoped: dict[str, list[tuple[ProgrammeRole, str]]] = {}
    for grant in store.programme_roles():
        if grant.scope:
            scoped.setdefault(grant.grader, []).append((grant.role, grant.scope))
        else:
            everywhere.setdefault(grant.grader, set()).add(grant.role)
    names = {n for n in store.graders() if not n.startswith(REFERENCE_PREFIX)}
    names |= everywhere.keys() | scoped.keys()
    graders = tuple(
        GraderRoles(
            name,
            frozenset(everywhere.get(name, ())),
            tuple(sorted(scoped.get(name, []), key=lambda rs: (ROLE_ORDER.index(rs[0]), rs[1]))),
        )
        for name in sorted(names, key=lambda n: (n.casefold(), n))
    )
    test_sets = tuple(
        TestSetInfo(t.name, t.size, t.graders, t.unannounced) for t in store.test_sets()
    )
    leads = tuple(g.name for g in graders if ProgrammeRole.QA in g.roles)
    reason = _refusal(store, (user or "").strip(), rules, leads)
    return ProgrammeSetup(
        (user or "").strip(), rules, graders, test_sets, may_change=not reason, reason=reason
    )


def apply_setup(
    store: LabelStore,
    rules: RoutingRules,
    changes: Iterable[RoleChange] = (),
    *,
    actor: str,
) -> ProgrammeSetup:
    """Apply the dialog's rules and role changes together; return the programme read again.

    Setting up a new programme grants ``actor`` the QA role first, so a failure after it never
    leaves a programme nobody may change. Grants go before revocations, so a QA lead can hand the
    role over in one step.

    Raises:
        ProgrammeAdminError: ``actor`` may not change the programme, a name is not a grader's,
            or the programme would be left without a QA lead (checked before anything is
            written).
        StoreWriteError: the store refused a write.
    """
    actor = actor.strip()
    current = _allowed(store, actor)
    changes = [RoleChange(_grader_name(c.grader), c.role, c.granted) for c in changes]
    leads = {actor} if current is None else set(_qa_leads(store))
    for change in changes:  # refuse before anything is written
        if change.role is ProgrammeRole.QA:
            (leads.add if change.granted else leads.discard)(change.grader)
    if not leads:
        raise ProgrammeAdminError(LAST_QA_LEAD)
    apply_rules(store, rules, actor=actor)
    for change in sorted(changes, key=lambda c: not c.granted):
        set_role(store, change, actor=actor)
    return read_setup(store, actor)


def apply_rules(store: LabelStore, rules: RoutingRules, *, actor: str) -> bool:
    """Set up the programme with ``rules`` or change them; return whether anything was written.

    The first setup also makes ``actor`` the programme's first QA lead. Unchanged rules write
    nothing (no audit row for a change that is none).

    Raises:
        ProgrammeAdminError: ``actor`` may not change the programme.
    """
    actor = actor.strip()
    current = _allowed(store, actor)
    if current is None:
        store.set_programme_role(actor, ProgrammeRole.QA, actor=actor)
    if current == rules:
        return False
    store.set_programme_rules(rules, actor=actor)
    return True


def set_role(store: LabelStore, change: RoleChange, *, actor: str) -> None:
    """Grant or revoke a role everywhere (idempotent: a role already so writes nothing).

    Raises:
        ProgrammeAdminError: ``actor`` may not change the programme, none is set up, the name is
            not a grader's, or ``actor`` would give up the last QA role.
    """
    actor = actor.strip()
    _require_active(store, actor)
    grader = _grader_name(change.grader)
    if change.role is ProgrammeRole.QA and not change.granted and grader == actor:
        if not set(_qa_leads(store)) - {actor}:
            raise ProgrammeAdminError(LAST_QA_LEAD)
    store.set_programme_role(grader, change.role, actor=actor, granted=change.granted)


def create_test_set(
    store: LabelStore,
    name: str,
    *,
    actor: str,
    size: int | None = None,
    seed: int = 0,
    unannounced: bool = False,
) -> int:
    """A test set from images with a final grade (a seeded sample of ``size``); its size.

    Raises:
        ProgrammeAdminError: ``actor`` may not change the programme, none is set up, or the
            name or size makes no sense.
        StoreWriteError: no image has a final grade yet, or the name is taken.
    """
    actor = actor.strip()
    _require_active(store, actor)
    if not name.strip():
        raise ProgrammeAdminError("A test set needs a name.")
    if size is not None and size < 1:
        raise ProgrammeAdminError("A test set needs at least one image.")
    return build_test_set_from_finals(
        store, name.strip(), actor=actor, size=size, seed=seed, unannounced=unannounced
    )


def assign_test_set(store: LabelStore, name: str, grader: str, *, actor: str) -> None:
    """Assign the test set ``name`` to ``grader`` (idempotent).

    Raises:
        ProgrammeAdminError: ``actor`` may not change the programme, none is set up, or the
            grader's name is not a grader's.
        StoreWriteError: there is no such test set.
    """
    actor = actor.strip()
    _require_active(store, actor)
    store.assign_test_set(name, _grader_name(grader), actor=actor)


# ---------------------------------------------------------------------- the rule


def _refusal(store: LabelStore, user: str, rules: RoutingRules | None, leads: Sequence[str]) -> str:
    """Why ``user`` may not change the programme, or "" when they may."""
    if not user:
        return NOT_SIGNED_IN
    if store.read_only:
        return READ_ONLY
    if rules is None or user in leads:
        return ""
    if not leads:
        return (
            "Only a QA lead may change the programme, and nobody holds the QA role: grant it "
            "with `sall-desktop programme role NAME qa --by NAME`."
        )
    return f"Only a QA lead may change the programme; ask {_either(leads)} to make you one."


def _either(names: Sequence[str]) -> str:
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " or " + names[-1]


def _allowed(store: LabelStore, actor: str) -> RoutingRules | None:
    """The rules in force, after checking that ``actor`` may change the programme."""
    rules = store.programme_rules()
    reason = _refusal(store, actor, rules, _qa_leads(store))
    if reason:
        raise ProgrammeAdminError(reason)
    return rules


def _qa_leads(store: LabelStore) -> list[str]:
    """The graders who hold the QA role everywhere."""
    return [g.grader for g in store.programme_roles() if g.role is ProgrammeRole.QA and not g.scope]


def _require_active(store: LabelStore, actor: str) -> RoutingRules:
    rules = _allowed(store, actor)
    if rules is None:
        raise ProgrammeAdminError(NOT_SET_UP)
    return rules


def _grader_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise ProgrammeAdminError("A grader needs a name.")
    if name.startswith(REFERENCE_PREFIX):
        raise ProgrammeAdminError(f"{name!r} is a reference source, not a grader.")
    return name


__all__: Sequence[str] = (
    "GraderRoles",
    "ProgrammeAdminError",
    "ProgrammeSetup",
    "RoleChange",
    "ROLE_NAMES",
    "ROLE_ORDER",
    "TestSetInfo",
    "apply_rules",
    "apply_setup",
    "assign_test_set",
    "create_test_set",
    "read_setup",
    "set_role",
)
