"""Anatomy of a synthetic fundus: field geometry, background, optic disc, macula, vessel tree.

Everything is laid out in *normalised field coordinates*: origin at the centre of the circular
field, unit = field radius, x to the right, y downwards. Geometry, vessel tree and the low-frequency
background are therefore the same for one seed at any output size; only the rasterisation changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

FloatImage = NDArray[np.float32]
"""H x W x 3 float32 canvas, RGB, reflectance-like values (about 0-1, clipped at the end)."""

GRID = 256
"""Side of the low-resolution grid the smooth background is built on (size-independent)."""
EXTENT = 1.15
"""Half-width of that grid in normalised units (a little more than the field)."""
STEP = 0.015
"""Vessel growth step in normalised units."""
MIN_VESSEL_WIDTH = 0.004
"""Vessels thinner than this (normalised) stop growing."""
MAX_VESSEL_POINTS = 4500
"""Bound on the vessel tree size, so rendering time stays bounded."""


@dataclass(frozen=True)
class Geometry:
    """Where things are. Pixel coordinates follow OpenCV: pixel (i, j) has its centre at (i, j).

    Attributes:
        width, height: output size in pixels.
        cx, cy: centre of the circular field in pixels.
        radius: field radius in pixels.
        side: +1 when the disc lies to the right of the fovea (right eye), -1 otherwise.
        fovea, disc: centres in normalised units.
        disc_radius: horizontal semi-axis of the disc in normalised units (vertical is 8 % more).
        base_colour: RGB background colour of this eye at full illumination (0-1).
    """

    width: int
    height: int
    cx: float
    cy: float
    radius: float
    side: int
    fovea: tuple[float, float]
    disc: tuple[float, float]
    disc_radius: float
    base_colour: tuple[float, float, float]

    def to_px(self, x: float, y: float) -> tuple[float, float]:
        """Normalised point -> pixel coordinates (x, y)."""
        return self.cx + x * self.radius, self.cy + y * self.radius

    def in_field(self, x: float, y: float, margin: float = 0.0) -> bool:
        """Whether a normalised point is inside the visible part of the field."""
        if math.hypot(x, y) > 1.0 - margin:
            return False
        px, py = self.to_px(x, y)
        edge = margin * self.radius
        return edge <= px < self.width - edge and edge <= py < self.height - edge

    def disc_distance(self, x: float, y: float) -> float:
        """Elliptical distance from the disc centre in disc radii."""
        dx = (x - self.disc[0]) / self.disc_radius
        dy = (y - self.disc[1]) / (self.disc_radius * 1.08)
        return math.hypot(dx, dy)


def make_geometry(width: int, height: int, laterality: str, rng: np.random.Generator) -> Geometry:
    """Draw the eye's layout: field, fovea near the centre, disc on the nasal side."""
    # A 3:2 camera frame clips the circle a little at top and bottom, as real ones do.
    radius = min(0.47 * width, 0.52 * height)
    side = 1 if laterality == "R" else -1
    fx = -side * rng.uniform(0.05, 0.11)
    fy = rng.uniform(-0.02, 0.05)
    dist = rng.uniform(0.62, 0.70)
    disc = (fx + side * dist, fy - rng.uniform(0.03, 0.08))
    pigment = rng.uniform(0.0, 1.0)
    light, dark = np.array([0.86, 0.43, 0.17]), np.array([0.64, 0.23, 0.08])
    base = (1.0 - pigment) * light + pigment * dark
    return Geometry(
        width=width,
        height=height,
        cx=(width - 1) / 2.0,
        cy=(height - 1) / 2.0,
        radius=radius,
        side=side,
        fovea=(fx, fy),
        disc=disc,
        disc_radius=rng.uniform(0.125, 0.145),
        base_colour=(float(base[0]), float(base[1]), float(base[2])),
    )


def _smooth_noise(rng: np.random.Generator, sigma: float) -> NDArray[np.float32]:
    """Unit-variance Gaussian noise on the GRID, low-passed with ``sigma`` grid cells."""
    # Very smooth noise is made on a coarser grid and resized: same look, a fraction of the cost.
    sub = 8 if sigma >= 8 else 1
    noise = rng.standard_normal((GRID // sub, GRID // sub), dtype=np.float32)
    noise = np.asarray(cv2.GaussianBlur(noise, (0, 0), sigma / sub), np.float32)
    if sub > 1:
        noise = np.asarray(cv2.resize(noise, (GRID, GRID), interpolation=cv2.INTER_CUBIC))
    return (noise / (float(noise.std()) + 1e-6)).astype(np.float32)


def background(geom: Geometry, rng: np.random.Generator) -> FloatImage:
    """Render the smooth fundus background at full size.

    Built on a fixed normalised GRID (so it is size-independent) and warped to the output: base
    colour, choroidal "tigroid" texture, mottling, darker macula with a foveal reflex, vignetting
    and an uneven illumination. Outside the field is black.

    Returns:
        H x W x 3 float32 RGB image.
    """
    axis = np.linspace(-EXTENT, EXTENT, GRID, dtype=np.float32)
    x, y = np.meshgrid(axis, axis)
    rr = np.hypot(x, y)
    base = np.array(geom.base_colour, dtype=np.float32)

    low = _smooth_noise(rng, 22.0)
    choroid = _smooth_noise(rng, 1.8)
    mottle = _smooth_noise(rng, 0.7)
    # Zero crossings of band-passed noise form a vessel-like network: the choroidal vessels that
    # show through a lightly pigmented RPE, orange stripes between darker pigment.
    ridge = np.exp(-2.5 * choroid * choroid)
    tigroid = rng.uniform(0.04, 0.14) * (1.2 - geom.base_colour[1] / 0.43 * 0.4)
    img = np.empty((GRID, GRID, 3), np.float32)
    for c, (k_tig, k_mot) in enumerate(((0.45, 0.03), (1.0, 0.05), (1.0, 0.05))):
        img[..., c] = (
            base[c] * (1.0 + 0.07 * low + k_mot * mottle) * (1.0 - tigroid * k_tig * (1.0 - ridge))
        )

    fx, fy = geom.fovea
    d2 = (x - fx) ** 2 + (y - fy) ** 2
    macula = rng.uniform(0.45, 0.6) * np.exp(-d2 / (2 * 0.17**2)) + 0.3 * np.exp(
        -d2 / (2 * 0.05**2)
    )
    for c, k in enumerate((0.35, 0.6, 0.5)):
        img[..., c] *= 1.0 - k * macula
    if rng.random() < 0.6:
        img += (rng.uniform(0.08, 0.2) * np.exp(-d2 / (2 * 0.012**2)))[..., None]

    # Peripapillary pallor: the nerve fibre layer is thick around the disc.
    dd2 = (x - geom.disc[0]) ** 2 + (y - geom.disc[1]) ** 2
    img *= (1.0 + 0.05 * np.exp(-dd2 / (2 * (geom.disc_radius * 1.3) ** 2)))[..., None]

    angle = rng.uniform(0, 2 * math.pi)
    tilt = rng.uniform(0.0, 0.15)
    illumination = (1.0 - 0.5 * rr**2.6) * (1.0 + tilt * (np.cos(angle) * x + np.sin(angle) * y))
    illumination = np.clip(illumination, 0.0, None) * (rr < 1.03)
    img *= illumination[..., None]

    scale = 2.0 * EXTENT * geom.radius / (GRID - 1)
    matrix = np.array(
        [
            [scale, 0.0, geom.cx - EXTENT * geom.radius],
            [0.0, scale, geom.cy - EXTENT * geom.radius],
        ],
        np.float64,
    )
    out = cv2.warpAffine(
        img, matrix, (geom.width, geom.height), flags=cv2.INTER_CUBIC, borderValue=(0, 0, 0)
    )
    return np.asarray(out, np.float32)


def _smoothstep(e0: float, e1: float, v: NDArray[np.float32]) -> NDArray[np.float32]:
    t = np.clip((v - e0) / (e1 - e0), 0.0, 1.0)
    return np.asarray(t * t * (3.0 - 2.0 * t), np.float32)


def draw_disc(img: FloatImage, geom: Geometry, rng: np.random.Generator) -> None:
    """Paint the optic disc (pale orange-pink rim, whiter temporal cup) in place."""
    r = geom.radius
    dx, dy = geom.to_px(*geom.disc)
    rx, ry = geom.disc_radius * r, geom.disc_radius * r * 1.08
    half = int(math.ceil(ry * 1.5)) + 2
    x0, x1 = max(0, int(dx) - half), min(geom.width, int(dx) + half)
    y0, y1 = max(0, int(dy) - half), min(geom.height, int(dy) + half)
    if x0 >= x1 or y0 >= y1:
        return
    xs = (np.arange(x0, x1, dtype=np.float32) - dx) / rx
    ys = (np.arange(y0, y1, dtype=np.float32) - dy) / ry
    u, v = np.meshgrid(xs, ys)
    theta = np.arctan2(v, u)
    wobble = 1.0 + 0.035 * np.sin(3 * theta + rng.uniform(0, 6.3)) + 0.02 * np.sin(5 * theta)
    rho = np.hypot(u, v) / wobble
    disc = 1.0 - _smoothstep(0.92, 1.02, rho)
    cup_r = rng.uniform(0.28, 0.5)
    cu = u + geom.side * rng.uniform(0.08, 0.2)  # the cup sits towards the temporal side
    cup = 1.0 - _smoothstep(cup_r * 0.6, cup_r * 1.15, np.hypot(cu, v * 1.1))
    # The rim is pinker towards the margin and paler on the temporal side, as on real discs.
    t = np.clip(rho * rho, 0.0, 1.0)
    pallor = 1.0 + 0.07 * np.clip(-u * geom.side, 0.0, 1.0)
    roi = img[y0:y1, x0:x1]
    illum = 1.0 - 0.5 * math.hypot(*geom.disc) ** 2.6
    inner = np.array([0.95, 0.64, 0.28], np.float32) * illum
    outer = np.array([0.88, 0.45, 0.18], np.float32) * illum
    cup_col = np.array([0.98, 0.82, 0.45], np.float32) * illum
    for c in range(3):
        rim = (inner[c] + (outer[c] - inner[c]) * t) * pallor
        roi[..., c] = roi[..., c] * (1 - disc) + rim * disc
        roi[..., c] = roi[..., c] * (1 - cup) + cup_col[c] * cup


@dataclass(frozen=True)
class Vessel:
    """One branch of the retinal vessel tree.

    Attributes:
        points: N x 2 float32 polyline in normalised units.
        widths: N float32 widths in normalised units.
        kind: "artery" or "vein".
    """

    points: NDArray[np.float32]
    widths: NDArray[np.float32]
    kind: str


def _angle_to(hx: float, target: float) -> float:
    return (target - hx + math.pi) % (2 * math.pi) - math.pi


class _TreeBuilder:
    """Grows the vessel tree with a bounded random walk (Murray's law at each bifurcation)."""

    def __init__(self, geom: Geometry, rng: np.random.Generator) -> None:
        self.geom = geom
        self.rng = rng
        self.vessels: list[Vessel] = []
        self.budget = MAX_VESSEL_POINTS

    def grow(
        self,
        start: tuple[float, float],
        heading: float,
        width: float,
        kind: str,
        depth: int,
        pref: str,
    ) -> None:
        """Grow a branch and, depth-first, its side branches.

        ``pref`` steers the walk: "radial" (away from the disc), "fovea" (towards the fovea,
        stopping short of the avascular zone) or "nasal" (towards the nasal periphery).
        """
        stack = [(start, heading, width, depth, pref)]
        fx, fy = self.geom.fovea
        dx, dy = self.geom.disc
        side = self.geom.side
        cos, sin, atan2, hypot, tau, pi = (
            math.cos,
            math.sin,
            math.atan2,
            math.hypot,
            math.tau,
            math.pi,
        )
        while stack and self.budget > 0:
            (x, y), h, w, d, mode = stack.pop()
            n = min(self.budget, 120)
            kicks = self.rng.normal(0.0, 0.06, n).tolist()
            branch_u = self.rng.random(n).tolist()
            xs, ys, ws = [x], [y], [w]
            curv = 0.0
            since = 0
            stop_fovea = self.rng.uniform(0.12, 0.2)
            home = 1.0 if y > fy else -1.0  # which side of the horizontal raphe we started on
            nasal = atan2(0.25 * (1 if y > dy else -1), side)
            for i in range(n):
                curv = 0.7 * curv + kicks[i]
                if mode == "radial":
                    target = atan2(y - dy, x - dx)
                elif mode == "fovea":
                    target = atan2(fy - y, fx - x)
                else:
                    target = nasal
                h += curv + 0.07 * ((target - h + pi) % tau - pi)
                if mode != "fovea":
                    dist_f = hypot(x - fx, y - fy)
                    if dist_f < 0.3:  # keep the macula mostly avascular
                        away = atan2(y - fy, x - fx)
                        h += 0.15 * (0.3 - dist_f) / 0.3 * ((away - h + pi) % tau - pi)
                    if (x - fx) * side < 0 and abs(y - fy) < 0.12:
                        # Temporal vessels do not cross the horizontal raphe.
                        h += 0.12 * ((home * pi / 2 - h + pi) % tau - pi)
                x += STEP * cos(h)
                y += STEP * sin(h)
                w *= 0.982
                xs.append(x)
                ys.append(y)
                ws.append(w)
                since += 1
                if hypot(x, y) > 1.02 or w < MIN_VESSEL_WIDTH:
                    break
                if mode == "fovea" and hypot(x - fx, y - fy) < stop_fovea:
                    break
                p_branch = 0.03 if mode == "fovea" else 0.065
                if d < 4 and since > 5 and branch_u[i] < p_branch and w > 2.2 * MIN_VESSEL_WIDTH:
                    child = w * self.rng.uniform(0.5, 0.85)
                    w = (w**3 - child**3) ** (1.0 / 3.0)
                    turn = (1 if self.rng.random() < 0.5 else -1) * self.rng.uniform(0.45, 1.1)
                    child_mode = "radial" if mode == "nasal" else mode
                    stack.append(((x, y), h + turn, child, d + 1, child_mode))
                    since = 0
            self._add(xs, ys, ws, kind)

    def _add(self, xs: list[float], ys: list[float], ws: list[float], kind: str) -> None:
        if len(xs) < 2:
            return
        pts = np.stack([np.asarray(xs, np.float32), np.asarray(ys, np.float32)], axis=1)
        self.vessels.append(Vessel(pts, np.asarray(ws, np.float32), kind))
        self.budget -= len(xs)

    def arcade(self, vert: int, kind: str, width: float, a: float, b: float) -> None:
        """A temporal arcade: an arch from the disc around the macula, then free growth."""
        rng = self.rng
        dx, dy = self.geom.disc
        t = -self.geom.side  # temporal direction in x
        lam = rng.uniform(0.12, 0.3, 2)
        amp = rng.uniform(0.002, 0.006, 2)
        phase = rng.uniform(0, 2 * math.pi, 2)
        theta_end = rng.uniform(0.75, 1.05)
        n = int((math.pi - theta_end) * (a + b) / 2 / STEP) + 1
        thetas = np.linspace(math.pi, theta_end, n)
        ux = a * (1 + np.cos(thetas))
        vy = vert * b * np.sin(thetas)
        seg = np.hypot(np.diff(ux), np.diff(vy))
        arc = np.concatenate([[0.0], np.cumsum(seg)])
        # Perpendicular wiggle, faded in over the first 0.1 so the vessel leaves the disc cleanly.
        wiggle = sum(amp[k] * np.sin(2 * math.pi * arc / lam[k] + phase[k]) for k in range(2))
        wiggle = wiggle * np.clip(arc / 0.1, 0, 1)
        tang = np.arctan2(np.gradient(vy), np.gradient(ux))
        # Trunks leave from different points of the cup, not all from one pixel.
        r_d = self.geom.disc_radius
        xs = dx + rng.uniform(-0.3, 0.3) * r_d + t * (ux - wiggle * np.sin(tang))
        ys = dy + rng.uniform(-0.15, 0.15) * r_d + vy + wiggle * np.cos(tang)
        widths = np.empty(n)
        w = width
        next_branch = rng.uniform(0.08, 0.14)
        for i in range(n):
            if arc[i] > next_branch and self.budget > 0:
                next_branch = arc[i] + rng.uniform(0.07, 0.14)
                inward = rng.random() < 0.45
                child = w * (rng.uniform(0.35, 0.6) if inward else rng.uniform(0.45, 0.75))
                w = (w**3 - child**3) ** (1.0 / 3.0)
                heading = math.atan2(ys[min(i + 1, n - 1)] - ys[i], xs[min(i + 1, n - 1)] - xs[i])
                # Image y points down: for the superior arch (vert = -1) running temporally, the
                # macula lies on the clockwise side.
                sign = -vert * t * (1 if inward else -1)
                turn = rng.uniform(0.5, 1.1) * sign
                mode = "fovea" if inward else "radial"
                self.grow((xs[i], ys[i]), heading + turn, child, kind, 2, mode)
            w *= 0.998
            widths[i] = w
        self._add(list(xs), list(ys), list(widths), kind)
        end_heading = math.atan2(ys[-1] - ys[-2], xs[-1] - xs[-2])
        self.grow((xs[-1], ys[-1]), end_heading, w, kind, 2, "radial")


def build_vessel_tree(geom: Geometry, rng: np.random.Generator) -> list[Vessel]:
    """Grow arteries and veins from the disc: two temporal arcades, nasal and macular branches.

    Veins are about 1.35x wider than their companion arteries. The tree is built in normalised
    units and bounded to MAX_VESSEL_POINTS points.
    """
    builder = _TreeBuilder(geom, rng)
    side = geom.side

    def start() -> tuple[float, float]:
        jitter = rng.uniform(-0.3, 0.3, 2) * geom.disc_radius
        return geom.disc[0] + float(jitter[0]), geom.disc[1] + float(jitter[1])

    for vert in (-1, 1):
        for kind, width, a, b in (("vein", 0.03, 0.62, 0.44), ("artery", 0.022, 0.6, 0.4)):
            builder.arcade(
                vert,
                kind,
                width * rng.uniform(0.9, 1.1),
                a * rng.uniform(0.9, 1.1),
                b * rng.uniform(0.85, 1.15),
            )
        for kind, width in (("vein", 0.022), ("artery", 0.016)):
            heading = math.atan2(vert * 1.0, side * rng.uniform(0.3, 0.8))
            builder.grow(start(), heading, width * rng.uniform(0.85, 1.1), kind, 1, "nasal")
    for _ in range(int(rng.integers(2, 5))):
        kind = "artery" if rng.random() < 0.5 else "vein"
        heading = math.atan2(rng.uniform(-0.25, 0.25), -side)
        builder.grow(start(), heading, rng.uniform(0.006, 0.009), kind, 3, "fovea")
    for _ in range(int(rng.integers(1, 4))):
        kind = "artery" if rng.random() < 0.5 else "vein"
        heading = math.atan2(rng.uniform(-0.6, 0.6), side)
        builder.grow(start(), heading, rng.uniform(0.007, 0.011), kind, 3, "radial")
    return builder.vessels


VesselMaps = dict[str, NDArray[np.uint8]]


def draw_vessels(geom: Geometry, vessels: list[Vessel]) -> VesselMaps:
    """Rasterise the tree into one 8-bit coverage map per kind ("artery", "vein").

    Widths under one pixel are drawn one pixel wide at proportionally lower coverage, and thin
    vessels have less contrast than thick ones, as in photographs. Large arteries get a central
    light reflex.
    """
    maps = {k: np.zeros((geom.height, geom.width), np.uint8) for k in ("artery", "vein")}
    shift = 3
    scale = float(1 << shift)
    passes: list[tuple[int, str, NDArray[np.int32], int]] = []
    reflexes: list[tuple[int, str, NDArray[np.int32], int]] = []
    for vessel in vessels:
        pts = vessel.points * geom.radius + np.array([geom.cx, geom.cy], np.float32)
        wpx = vessel.widths * geom.radius
        thick = np.maximum(1, np.rint(wpx)).astype(np.int32)
        contrast = 0.25 + 0.75 * np.clip(vessel.widths / 0.025, 0.0, 1.0) ** 1.2
        value = (np.clip(255.0 * contrast * np.minimum(wpx, 1.0), 0, 255) // 16 * 16).astype(int)
        key = thick * 1000 + value
        breaks = np.flatnonzero(np.diff(key[:-1])) + 1
        starts = np.concatenate([[0], breaks])
        ends = np.concatenate([breaks, [len(pts) - 1]])
        fixed = np.rint(pts * scale).astype(np.int32)
        for s, e in zip(starts, ends, strict=True):
            v, t, w, run = int(value[s]), int(thick[s]), float(wpx[s]), fixed[s : e + 1]
            if v <= 0:
                continue
            if w < 2.5:
                passes.append((v, vessel.kind, run, t))
                continue
            # A vessel is a cylinder: lighter at its edges than along its axis.
            passes.append((int(v * 0.7), vessel.kind, run, t))
            passes.append((v, vessel.kind, run, max(1, int(round(0.6 * w)))))
            if vessel.kind == "artery" and w >= 4.0:
                reflexes.append((int(v * 0.75), vessel.kind, run, max(1, int(round(0.15 * w)))))
    # Faint passes first, so a faint branch never overwrites a dark vessel it crosses.
    passes.sort(key=lambda p: (p[0], p[3]))
    for value, kind, run, thick in passes + reflexes:
        cv2.polylines(maps[kind], [run], False, value, thick, cv2.LINE_AA, shift)
    sigma = max(0.45, 0.0025 * geom.radius)
    for kind in maps:
        maps[kind] = np.asarray(cv2.GaussianBlur(maps[kind], (0, 0), sigma), np.uint8)
    return maps


VESSEL_ABSORPTION = {
    "vein": (0.5, 0.72, 0.6),
    "artery": (0.2, 0.44, 0.36),
}
"""Fraction of light removed per RGB channel at full coverage: veins dark purple-red, arteries
lighter and redder."""


def composite_vessels(img: FloatImage, maps: VesselMaps) -> None:
    """Darken the canvas under the vessel maps, in place."""
    # One pass for both kinds: transmittance = 1 - a_vein * V - a_artery * A per channel, in 8 bits
    # (saturating at 0 where an artery crosses a vein), then a single multiply.
    matrix = np.array(
        [[-VESSEL_ABSORPTION["vein"][c], -VESSEL_ABSORPTION["artery"][c], 255.0] for c in range(3)],
        np.float32,
    )
    transmittance = cv2.transform(cv2.merge([maps["vein"], maps["artery"]]), matrix)
    cv2.multiply(img, transmittance, dst=img, scale=1.0 / 255.0, dtype=cv2.CV_32F)
