"""Lesions of diabetic retinopathy and AMD, drawn by the grading rules, each with its own mask.

The grade decides which lesions appear (``docs/grading-conventions.md``, Scales):

| grade | lesions drawn |
|---|---|
| DR 1 | microaneurysms only |
| DR 2 | more microaneurysms; haemorrhages in 1-3 quadrants and/or hard exudates; maybe CWS |
| DR 3 | haemorrhages in all four quadrants, venous beading in >= 2 quadrants, cotton-wool spots |
| DR 4 | neovascularisation and/or pre-retinal haemorrhage over a DR 2 or DR 3 background |
| AMD 1 | small drusen around the fovea |
| AMD 2 | large drusen (and some small ones) |
| AMD 3 | a CNV membrane at the macula with subretinal haemorrhage and hard exudates |

DR and AMD share the "haemorrhage" and "hard_exudate" masks: that shared evidence is what SALL
exploits. Quadrants are taken about the fovea.

Lesion sizes are in field radii with a floor in pixels, so a lesion stays visible when the image is
rendered (or later resized) to 128-256 pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from model_zoo.datasets.anatomy import Geometry, Vessel, VesselMaps
from model_zoo.datasets.canvas import (
    SCALE,
    SHIFT,
    Canvas,
    Ellipse,
)

HAEM = (0.46, 0.05, 0.035)
MA = (0.50, 0.04, 0.03)
EXUDATE = (1.0, 0.9, 0.45)
CWS = (0.97, 0.91, 0.8)
DRUSEN = (0.96, 0.78, 0.34)
CNV_MEMBRANE = (0.55, 0.5, 0.33)
PRERETINAL = (0.38, 0.02, 0.02)


@dataclass(frozen=True)
class LesionPlan:
    """Which lesions to draw and how many, decided before any painting."""

    microaneurysms: int = 0
    haem_quadrants: tuple[int, ...] = ()
    haem_per_quadrant: tuple[int, int] = (0, 0)
    exudate_clusters: int = 0
    cotton_wool: int = 0
    beading_quadrants: tuple[int, ...] = ()
    neovascular_patches: int = 0
    preretinal: int = 0
    small_drusen: int = 0
    large_drusen: int = 0
    cnv: bool = False


def _ri(rng: np.random.Generator, lo: int, hi: int) -> int:
    """Integer in [lo, hi] inclusive."""
    return int(rng.integers(lo, hi + 1))


def plan_lesions(dr: int | None, amd: int | None, rng: np.random.Generator) -> LesionPlan:
    """Translate the grades into lesion counts, following the grading rules (module docstring)."""
    quads = (0, 1, 2, 3)
    ma = haem_q = exud = cws = nv = prh = sd = ld = 0
    haem_quads: tuple[int, ...] = ()
    beading: tuple[int, ...] = ()
    cnv = False
    if dr == 1:
        ma = _ri(rng, 3, 9)
    elif dr is not None and dr >= 2:
        severe = dr == 3 or (dr == 4 and rng.random() < 0.5)
        if severe:
            ma = _ri(rng, 12, 26)
            haem_quads, haem_q = quads, _ri(rng, 5, 9)
            exud = _ri(rng, 0, 2)
            cws = _ri(rng, 1, 4)
            chosen = rng.permutation(4)[: _ri(rng, 2, 4)]
            beading = tuple(sorted(int(q) for q in chosen))
        else:
            ma = _ri(rng, 6, 18)
            has_haem = rng.random() < 0.8
            if has_haem:
                chosen = rng.permutation(4)[: _ri(rng, 1, 3)]
                haem_quads, haem_q = tuple(sorted(int(q) for q in chosen)), _ri(rng, 1, 4)
            exud = _ri(rng, 1, 3) if (not has_haem or rng.random() < 0.5) else 0
            cws = _ri(rng, 1, 2) if rng.random() < 0.3 else 0
        if dr == 4:
            u = rng.random()
            nv = _ri(rng, 1, 2) if u < 0.8 else 0
            prh = 1 if u >= 0.55 else 0
    if amd == 1:
        sd = _ri(rng, 12, 36)
    elif amd == 2:
        ld, sd = _ri(rng, 6, 16), _ri(rng, 0, 14)
    elif amd == 3:
        cnv = True
        ld = _ri(rng, 0, 6)
    return LesionPlan(
        microaneurysms=ma,
        haem_quadrants=haem_quads,
        haem_per_quadrant=(max(1, haem_q - 2), haem_q + 2) if haem_quads else (0, 0),
        exudate_clusters=exud,
        cotton_wool=cws,
        beading_quadrants=beading,
        neovascular_patches=nv,
        preretinal=prh,
        small_drusen=sd,
        large_drusen=ld,
        cnv=cnv,
    )


_QUADRANT_ANGLES = {
    0: (-math.pi, -math.pi / 2),  # upper-left of the fovea (image y points down)
    1: (-math.pi / 2, 0.0),  # upper-right
    2: (math.pi / 2, math.pi),  # lower-left
    3: (0.0, math.pi / 2),  # lower-right
}


def _sample_point(
    geom: Geometry,
    rng: np.random.Generator,
    centre: tuple[float, float],
    r_range: tuple[float, float],
    angles: tuple[float, float] = (-math.pi, math.pi),
    disc_clear: float = 1.5,
    margin: float = 0.08,
) -> tuple[float, float]:
    """A normalised point in an annulus sector around ``centre``, inside the field, off the disc.

    Rejection sampling; should every try fail (a sector mostly outside a clipped field), the
    sector's middle point pulled inside the field is returned, so a lesion the grade requires is
    never silently dropped.
    """
    for _ in range(60):
        a = rng.uniform(*angles)
        r = math.sqrt(rng.uniform(r_range[0] ** 2, r_range[1] ** 2))
        x, y = centre[0] + r * math.cos(a), centre[1] + r * math.sin(a)
        if geom.in_field(x, y, margin) and geom.disc_distance(x, y) > disc_clear:
            return x, y
    a, r = sum(angles) / 2, sum(r_range) / 2
    x, y = centre[0] + r * math.cos(a), centre[1] + r * math.sin(a)
    for _ in range(20):
        if geom.in_field(x, y, margin):
            break
        x, y = x * 0.9, y * 0.9
    return x, y


def _blob(
    cv: Canvas, rng: np.random.Generator, p: tuple[float, float], r_px: float, lobes: int
) -> list[Ellipse]:
    """An irregular blot: a few overlapping ellipses around ``p``."""
    cx, cy = cv.geom.to_px(*p)
    shapes: list[Ellipse] = [(cx, cy, r_px, r_px * rng.uniform(0.75, 1.0), rng.uniform(0, 180))]
    for _ in range(lobes - 1):
        a = rng.uniform(0, 2 * math.pi)
        d = r_px * rng.uniform(0.3, 0.7)
        rr = r_px * rng.uniform(0.5, 0.85)
        shapes.append(
            (cx + d * math.cos(a), cy + d * math.sin(a), rr, rr * 0.8, rng.uniform(0, 180))
        )
    return shapes


def _haemorrhage(cv: Canvas, rng: np.random.Generator, p: tuple[float, float]) -> None:
    geom = cv.geom
    if rng.random() < 0.3 and math.hypot(p[0] - geom.fovea[0], p[1] - geom.fovea[1]) > 0.25:
        # Flame haemorrhage: superficial, elongated along the nerve fibres (radial from the disc).
        length = cv.px(rng.uniform(0.028, 0.05), 3.0)
        angle = math.degrees(math.atan2(p[1] - geom.disc[1], p[0] - geom.disc[0]))
        cx, cy = geom.to_px(*p)
        shape = [(cx, cy, length, max(1.5, length * rng.uniform(0.25, 0.4)), angle)]
        cv.paint("haemorrhage", shape, HAEM, rng.uniform(0.75, 0.9), 0.3 * shape[0][3])
    else:
        r = cv.px(rng.uniform(0.013, 0.03), 2.2)
        cv.paint(
            "haemorrhage",
            _blob(cv, rng, p, r, _ri(rng, 1, 3)),
            HAEM,
            rng.uniform(0.78, 0.95),
            0.25 * r,
        )


def _exudate_cluster(cv: Canvas, rng: np.random.Generator, centre: tuple[float, float]) -> None:
    """Hard exudates: sharp, bright yellow dots in a cluster or a circinate ring."""
    ring = rng.random() < 0.4
    radius = rng.uniform(0.05, 0.1)
    for k in range(_ri(rng, 6, 18)):
        if k == 0:
            a, d = 0.0, 0.0  # the cluster's centre was placed safely by the caller
        elif ring:
            a = rng.uniform(0, 2 * math.pi)
            d = radius * rng.uniform(0.85, 1.15)
        else:
            a, d = rng.uniform(0, 2 * math.pi), abs(rng.normal(0, radius * 0.5))
        p = (centre[0] + d * math.cos(a), centre[1] + d * math.sin(a))
        if not cv.geom.in_field(*p, 0.06) or cv.geom.disc_distance(*p) < 1.3:
            continue
        r = cv.px(rng.uniform(0.004, 0.011), 1.3)
        cv.paint(
            "hard_exudate",
            _blob(cv, rng, p, r, _ri(rng, 1, 2)),
            EXUDATE,
            rng.uniform(0.85, 1.0),
            max(0.3, 0.15 * r),
        )


def _nve_site(
    geom: Geometry, vessels: list[Vessel], rng: np.random.Generator
) -> tuple[float, float]:
    """A point on a large vessel 0.3-0.7 field radii from the disc (new vessels elsewhere grow
    from the venous side of the arcades)."""
    sites = []
    for v in vessels:
        dd = np.hypot(v.points[:, 0] - geom.disc[0], v.points[:, 1] - geom.disc[1])
        ok = (dd > 0.3) & (dd < 0.7) & (v.widths >= 0.008)
        ok &= np.hypot(v.points[:, 0], v.points[:, 1]) < 0.85
        sites.extend(v.points[np.flatnonzero(ok)].tolist())
    if not sites:
        return geom.disc
    x, y = sites[int(rng.integers(len(sites)))]
    return float(x), float(y)


def _neovascular_patch(
    cv: Canvas, maps: VesselMaps, vessels: list[Vessel], rng: np.random.Generator
) -> None:
    """A tangle of fine new vessels with a pale fibrous veil, on the disc (NVD) or on an
    arcade (NVE)."""
    geom = cv.geom
    if rng.random() < 0.5:
        centre = (
            geom.disc[0] + rng.uniform(-0.4, 0.4) * geom.disc_radius,
            geom.disc[1] + rng.uniform(-0.4, 0.4) * geom.disc_radius,
        )
        rho = geom.disc_radius * rng.uniform(0.8, 1.1)
    else:
        centre = _nve_site(geom, vessels, rng)
        rho = rng.uniform(0.06, 0.09)
    cx, cy = geom.to_px(*centre)
    rho_px = max(6.0, rho * geom.radius)
    veil = [(cx, cy, rho_px * 0.9, rho_px * rng.uniform(0.6, 0.9), rng.uniform(0, 180))]
    cv.paint(None, veil, (0.9, 0.78, 0.62), rng.uniform(0.25, 0.4), 0.35 * rho_px)
    thick = max(1, int(round(0.004 * geom.radius)))
    step = rho_px * 0.18
    patch_mask = np.zeros((geom.height, geom.width), np.uint8)
    lines: list[NDArray[np.int32]] = []
    for _ in range(_ri(rng, 20, 34)):
        a, d = rng.uniform(0, 2 * math.pi), rho_px * math.sqrt(rng.random())
        x, y, h = cx + d * math.cos(a), cy + d * math.sin(a), rng.uniform(0, 2 * math.pi)
        pts = [(x, y)]
        curl = rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 0.7)
        for _ in range(_ri(rng, 6, 14)):
            h += curl + rng.normal(0, 0.3)
            if math.hypot(x - cx, y - cy) > rho_px:  # stay in the patch
                h += 0.5 * ((math.atan2(cy - y, cx - x) - h + math.pi) % (2 * math.pi) - math.pi)
            x, y = x + step * math.cos(h), y + step * math.sin(h)
            pts.append((x, y))
        lines.append(np.rint(np.array(pts) * SCALE).astype(np.int32))
    cv2.polylines(maps["vein"], lines, False, 215, thick, cv2.LINE_AA, SHIFT)
    cv2.polylines(patch_mask, lines, False, 255, thick + 2, cv2.LINE_8, SHIFT)
    cv.masks["neovascularisation"] |= patch_mask > 0


def _venous_beading(
    cv: Canvas,
    maps: VesselMaps,
    vessels: list[Vessel],
    quads: tuple[int, ...],
    rng: np.random.Generator,
) -> None:
    """Sausage-like dilations along a stretch of a large vein in each chosen quadrant."""
    geom = cv.geom
    scratch = np.zeros((geom.height, geom.width), np.uint8)
    for q in quads:
        candidates: list[tuple[Vessel, NDArray[np.intp]]] = []
        for v in vessels:
            if v.kind != "vein":
                continue
            qx = v.points[:, 0] >= geom.fovea[0]
            qy = v.points[:, 1] >= geom.fovea[1]
            dd = np.hypot(v.points[:, 0] - geom.disc[0], v.points[:, 1] - geom.disc[1])
            ok = (qx.astype(int) + 2 * qy.astype(int) == q) & (v.widths >= 0.008)
            ok &= (dd > 2.0 * geom.disc_radius) & (np.hypot(v.points[:, 0], v.points[:, 1]) < 0.9)
            idx = np.flatnonzero(ok)
            if len(idx) >= 6:
                candidates.append((v, idx))
        if not candidates:
            continue
        vessel, idx = candidates[int(rng.integers(len(candidates)))]
        length = _ri(rng, 10, 18)
        first = int(rng.integers(0, max(1, len(idx) - length)))
        stretch = idx[first : first + length]
        pts = vessel.points[stretch] * geom.radius + np.array([geom.cx, geom.cy], np.float32)
        wpx = np.maximum(vessel.widths[stretch] * geom.radius, 1.5)
        seg = np.hypot(*np.diff(pts, axis=0).T)
        arc = np.concatenate([[0.0], np.cumsum(seg)])
        spacing = max(3.0, 2.5 * float(wpx.mean()))
        for s in np.arange(spacing / 2, arc[-1], spacing):
            x = float(np.interp(s, arc, pts[:, 0]))
            y = float(np.interp(s, arc, pts[:, 1]))
            r = 0.85 * float(np.interp(s, arc, wpx))
            centre = (int(round(x * SCALE)), int(round(y * SCALE)))
            cv2.circle(maps["vein"], centre, int(round(r * SCALE)), 255, -1, cv2.LINE_AA, SHIFT)
            cv2.circle(scratch, centre, int(round((r + 1) * SCALE)), 255, -1, cv2.LINE_8, SHIFT)
    cv.masks["venous_beading"] |= scratch > 0


def paint_vessel_lesions(
    cv: Canvas, plan: LesionPlan, maps: VesselMaps, vessels: list[Vessel], rng: np.random.Generator
) -> None:
    """Lesions of the vessel layer (venous beading, new vessels), drawn into the vessel maps."""
    if plan.beading_quadrants:
        _venous_beading(cv, maps, vessels, plan.beading_quadrants, rng)
    for _ in range(plan.neovascular_patches):
        _neovascular_patch(cv, maps, vessels, rng)


def paint_retinal_lesions(cv: Canvas, plan: LesionPlan, rng: np.random.Generator) -> None:
    """Intraretinal and subretinal lesions, painted after the vessels."""
    geom = cv.geom
    fovea = geom.fovea
    for q in plan.haem_quadrants:
        a0, a1 = _QUADRANT_ANGLES[q]
        for _ in range(_ri(rng, *plan.haem_per_quadrant)):
            p = _sample_point(geom, rng, fovea, (0.15, 0.85), (a0 + 0.12, a1 - 0.12))
            _haemorrhage(cv, rng, p)
    for _ in range(plan.exudate_clusters):
        p = _sample_point(geom, rng, fovea, (0.12, 0.55))
        _exudate_cluster(cv, rng, p)
    for _ in range(plan.cotton_wool):
        p = _sample_point(geom, rng, geom.disc, (0.2, 0.6), disc_clear=1.8)
        r = cv.px(rng.uniform(0.025, 0.045), 3.0)
        cv.paint("cotton_wool", _blob(cv, rng, p, r, 3), CWS, rng.uniform(0.6, 0.8), 0.45 * r)
    for _ in range(plan.microaneurysms):
        p = _sample_point(geom, rng, fovea, (0.06, 0.75))
        r = cv.px(rng.uniform(0.008, 0.013), 1.5)
        cx, cy = geom.to_px(*p)
        cv.paint("microaneurysm", [(cx, cy, r, r, 0.0)], MA, 0.95, max(0.3, 0.25 * r))
    if plan.cnv:
        _cnv(cv, rng)
    for _ in range(plan.large_drusen):
        p = _sample_point(geom, rng, fovea, (0.0, 0.3))
        r = cv.px(rng.uniform(0.016, 0.032), 3.0)
        cv.paint(
            "large_drusen",
            _blob(cv, rng, p, r, _ri(rng, 1, 2)),
            DRUSEN,
            rng.uniform(0.55, 0.75),
            0.35 * r,
        )
    for _ in range(plan.small_drusen):
        p = _sample_point(geom, rng, fovea, (0.0, 0.33))
        r = cv.px(rng.uniform(0.005, 0.009), 1.4)
        cx, cy = geom.to_px(*p)
        cv.paint(
            "small_drusen",
            [(cx, cy, r, r, 0.0)],
            DRUSEN,
            rng.uniform(0.5, 0.75),
            max(0.3, 0.45 * r),
        )


def _cnv(cv: Canvas, rng: np.random.Generator) -> None:
    """Neovascular AMD: a grey-green membrane at the macula, subretinal blood, an exudate ring."""
    geom = cv.geom
    fx, fy = geom.fovea
    a = rng.uniform(0, 2 * math.pi)
    off = rng.uniform(0.0, 0.05)
    centre = (fx + off * math.cos(a), fy + off * math.sin(a))
    rho = rng.uniform(0.06, 0.1)
    r_px = cv.px(rho, 4.0)
    cv.paint(
        "cnv", _blob(cv, rng, centre, r_px, 3), CNV_MEMBRANE, rng.uniform(0.6, 0.8), 0.3 * r_px
    )
    start = rng.uniform(0, 2 * math.pi)
    span = rng.uniform(math.pi / 2, 1.4 * math.pi)
    for _ in range(_ri(rng, 2, 5)):
        t = start + span * rng.random()
        d = rho * rng.uniform(0.7, 1.2)
        p = (centre[0] + d * math.cos(t), centre[1] + d * math.sin(t))
        r = cv.px(rho * rng.uniform(0.35, 0.65), 2.5)
        cv.paint("haemorrhage", _blob(cv, rng, p, r, 2), HAEM, rng.uniform(0.8, 0.95), 0.25 * r)
    for _ in range(_ri(rng, 5, 14)):
        t = rng.uniform(0, 2 * math.pi)
        d = rho * rng.uniform(1.2, 1.8)
        p = (centre[0] + d * math.cos(t), centre[1] + d * math.sin(t))
        if geom.in_field(*p, 0.06):
            r = cv.px(rng.uniform(0.005, 0.01), 1.3)
            cv.paint("hard_exudate", _blob(cv, rng, p, r, 1), EXUDATE, 0.9, max(0.3, 0.15 * r))


def paint_preretinal(cv: Canvas, plan: LesionPlan, rng: np.random.Generator) -> None:
    """Pre-retinal haemorrhage: a dark boat-shaped pool with a flat fluid level, hiding vessels."""
    geom = cv.geom
    for _ in range(plan.preretinal):
        p = _sample_point(geom, rng, geom.fovea, (0.25, 0.6), disc_clear=1.6, margin=0.15)
        r = cv.px(rng.uniform(0.06, 0.1), 5.0)
        cx, cy = geom.to_px(*p)
        shape = [(cx, cy, r, r * rng.uniform(0.8, 1.0), 0.0)]
        cv.paint(
            "preretinal_haemorrhage",
            shape,
            PRERETINAL,
            0.97,
            0.08 * r,
            cut_above=cy - r * rng.uniform(0.1, 0.45),
        )
