"""Synthetic labelled video, generated offline and deterministically from a seed.

Nothing can be downloaded here, so the workloads make their own data: short clips in
which one object of a known class moves, scales and rotates over a textured, panning,
noisy background, and is sometimes partly hidden by a moving occluder. Frames differ
in difficulty (object size, contrast, noise, occlusion), and several classes differ
only in fine detail (disk / ring / hexagon, square / frame), so accuracy depends on
input resolution and network depth: what ApproxNet's settings trade.

Class frequencies follow a skewed "deployment" prior (a few classes dominate, as in
real video and as MCDNN's specialisation assumes). Everything is numpy; no TensorFlow.

Every clip is a pure function of ``(seed, split, clip_index)``, so any split can be
regenerated identically anywhere without storing it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "disk",
    "ring",
    "square",
    "frame",
    "triangle",
    "cross",
    "star",
    "hexagon",
    "crescent",
    "ellipse",
)
NUM_CLASSES = len(CLASS_NAMES)

#: Class frequencies at deployment (held-out split, workload samples): skewed, Zipf-like.
DEPLOY_PRIOR: tuple[float, ...] = (0.24, 0.18, 0.14, 0.10, 0.08, 0.07, 0.06, 0.05, 0.04, 0.04)
UNIFORM_PRIOR: tuple[float, ...] = tuple([1.0 / NUM_CLASSES] * NUM_CLASSES)

#: Stripe period (pixels at 224 px) on each class's surface. Fine stripes vanish when a frame is
#: downsampled, so they are a cue only at high input resolution; neighbouring hues get distant periods.
STRIPE_PERIOD: tuple[float, ...] = (3.0, 6.0, 12.0, 3.6, 7.2, 14.4, 4.3, 8.6, 5.0, 10.0)

#: Side of generated frames; smaller inputs are downsampled from it.
FRAME_SIZE = 224

#: Split ids mixed into the seed so splits never share a clip.
SPLITS: dict[str, int] = {"train": 0, "heldout": 1, "samples": 2}


@dataclass(frozen=True)
class Look:
    """Ranges the renderer draws each clip's appearance from: together they set how hard frames are."""

    radius: tuple[float, float] = (0.06, 0.25)  # object radius, fraction of the frame side
    contrast: tuple[float, float] = (0.25, 0.7)  # object colour distance from the background mean
    noise: tuple[float, float] = (0.01, 0.06)  # per-pixel Gaussian noise sigma
    grating_amp: tuple[float, float] = (0.01, 0.06)  # background texture amplitude per grating
    blob_amp: tuple[float, float] = (0.02, 0.12)  # background low-frequency blob amplitude
    occluder_p: float = 0.35  # share of clips with a moving occluding bar
    #: Each class has a typical hue (class k at k/10 of the colour wheel); an object's hue is drawn
    #: this far around it (0.5 = any hue). Colour is then a coarse, low-resolution cue that
    #: separates classes only partly; shape, which needs resolution and depth, settles the rest.
    hue_jitter: float = 0.12
    #: Largest rotation from the upright pose, radians (objects spin within +-this).
    max_rotation: float = 0.3
    #: How far background colours stray from grey (0: grey textures only, 1: any colour).
    background_tint: float = 0.15
    #: Amplitude range of the object's surface stripes (0 disables them).
    stripe_amp: tuple[float, float] = (0.15, 0.4)


LOOK = Look()


@dataclass(frozen=True)
class Batch:
    frames: np.ndarray  # uint8 [N, H, W, 3]
    labels: np.ndarray  # int32 [N]
    clips: np.ndarray  # int32 [N], clip index within the split


def _max_projection(x: np.ndarray, y: np.ndarray, angles: list[float]) -> np.ndarray:
    """Largest projection of (x, y) on the unit vectors at ``angles``: a regular polygon's field, before its offset."""
    d = x * np.cos(angles[0]) + y * np.sin(angles[0])
    for a in angles[1:]:
        d = np.maximum(d, x * np.cos(a) + y * np.sin(a))
    return d


def _shape_sdf(label: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance-like field of class ``label`` in object units (object radius ~1); < 0 inside."""
    r = np.sqrt(x * x + y * y)
    if label == 0:  # disk
        return r - 1.0
    if label == 1:  # ring (hole radius 0.44)
        return np.abs(r - 0.72) - 0.28
    if label == 2:  # square
        return np.maximum(np.abs(x), np.abs(y)) - 0.8
    if label == 3:  # hollow square
        return np.abs(np.maximum(np.abs(x), np.abs(y)) - 0.66) - 0.17
    if label == 4:  # equilateral triangle
        return _max_projection(x, y, [np.pi / 2 + k * 2 * np.pi / 3 for k in range(3)]) - 0.5
    if label == 5:  # plus-shaped cross
        bar1 = np.maximum(np.abs(x) - 0.95, np.abs(y) - 0.28)
        bar2 = np.maximum(np.abs(x) - 0.28, np.abs(y) - 0.95)
        return np.minimum(bar1, bar2)
    if label == 6:  # five-pointed (rounded) star
        phi = np.arctan2(y, x)
        return (r - (0.62 + 0.33 * np.cos(5 * phi))) * 0.7
    if label == 7:  # hexagon
        return _max_projection(x, y, [np.pi / 6 + k * np.pi / 3 for k in range(6)]) - 0.87
    if label == 8:  # crescent
        return np.maximum(r - 1.0, -(np.sqrt((x - 0.45) ** 2 + y * y) - 0.8))
    if label == 9:  # ellipse 2:1
        return (np.sqrt(x * x + (y / 0.5) ** 2) - 1.0) * 0.5
    raise ValueError(f"unknown class {label}")


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth random field [size, size, 3] in about [-1, 1]: bilinear upsampling of a coarse grid."""
    coarse = rng.standard_normal((cells, cells, 3)).astype(np.float32)
    pos = np.linspace(0, cells - 1, size, dtype=np.float32)
    i0 = np.floor(pos).astype(np.int64).clip(0, cells - 2)
    f = (pos - i0)[:, None]
    up = np.zeros((size, cells, 3), np.float32)
    up[:] = coarse[i0] * (1 - f[..., None]) + coarse[i0 + 1] * f[..., None]  # rows
    out = up[:, i0] * (1 - f[None, :, :]) + up[:, i0 + 1] * f[None, :, :]  # columns
    return out / 2.0


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
    return v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)


def render_clip(
    seed: int, split: str, index: int, label: int, n_frames: int, size: int = FRAME_SIZE, look: Look | None = None
) -> np.ndarray:
    """One clip, uint8 [n_frames, size, size, 3]; a pure function of its arguments."""
    look = look or LOOK
    rng = np.random.default_rng([seed, SPLITS[split], index])
    pan = rng.uniform(-2.5, 2.5, 2)
    pad = int(np.ceil(2.5 * max(0, n_frames - 1))) + 1  # just enough canvas for the camera pan
    big = size + 2 * pad
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5

    # Background: colour, gratings and smooth blobs over a larger canvas the camera pans across.
    # Backgrounds are mostly grey with a faint tint (objects are saturated): colour is a cue, not a given.
    base = (rng.uniform(0.25, 0.75) + rng.uniform(-1, 1, 3) * look.background_tint).astype(np.float32)
    texture = np.zeros((big, big, 3), np.float32)
    axis = np.arange(big, dtype=np.float32)
    for _ in range(int(rng.integers(2, 5))):
        freq = rng.uniform(2.0, 24.0) / size
        theta, phase = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        # sin(a*x + b*y + c) as a sum of two outer products: separable, so cheap
        ax, by = 2 * np.pi * freq * np.cos(theta) * axis, 2 * np.pi * freq * np.sin(theta) * axis + phase
        wave = np.outer(np.cos(by), np.sin(ax)) + np.outer(np.sin(by), np.cos(ax))
        tint = 1 + rng.uniform(-1, 1, 3) * look.background_tint
        texture += wave[..., None] * (tint * rng.uniform(*look.grating_amp) * rng.choice([-1, 1])).astype(np.float32)
    blobs = _smooth_noise(rng, big, int(rng.integers(4, 12)))
    blobs = blobs.mean(axis=2, keepdims=True) * (1 - look.background_tint) + blobs * look.background_tint
    texture += blobs * rng.uniform(*look.blob_amp)
    texture += base

    # Object: class shape with random colour, contrast, size, motion, rotation and growth.
    radius0 = rng.uniform(*look.radius) * size
    growth = rng.uniform(-0.03, 0.03)
    centre = rng.uniform(radius0, size - radius0, 2)
    velocity = rng.uniform(-4.0, 4.0, 2)
    angle, spin = rng.uniform(-look.max_rotation, look.max_rotation), rng.uniform(-0.1, 0.1)
    hue = (label / NUM_CLASSES + rng.uniform(-look.hue_jitter, look.hue_jitter)) % 1.0
    colour = _hsv_to_rgb(hue, rng.uniform(0.5, 1.0), rng.uniform(0.45, 1.0)).astype(np.float32)
    # the background is shifted away from the object's colour by a random contrast (low contrast is hard)
    gap = colour - base
    gap_norm = max(1e-3, float(np.abs(gap).max()))
    contrast = rng.uniform(*look.contrast)
    if gap_norm < contrast:
        texture -= (gap / gap_norm * (contrast - gap_norm)).astype(np.float32)
    shade = rng.uniform(-0.1, 0.1, 3).astype(np.float32)
    stripe_amp = np.float32(rng.uniform(*look.stripe_amp))

    # Occluder: a moving bar in about half the clips.
    occluder = rng.random() < look.occluder_p
    occ_w = rng.uniform(0.04, 0.12) * size
    occ_theta = rng.uniform(0, np.pi)
    occ_pos, occ_vel = rng.uniform(0, size), rng.uniform(-6, 6)
    occ_colour = rng.uniform(0, 1, 3).astype(np.float32)

    noise_sigma = rng.uniform(*look.noise)
    frames = np.empty((n_frames, size, size, 3), np.uint8)
    for t in range(n_frames):
        ox, oy = (np.round(pad + pan * t).astype(int)).clip(0, 2 * pad)
        img = texture[oy : oy + size, ox : ox + size].copy()
        radius = radius0 * (1 + growth) ** t
        cx, cy = centre + velocity * t
        # bounce off the borders
        cx = float(np.abs(((cx - radius) % (2 * (size - 2 * radius))) - (size - 2 * radius)) + radius)
        cy = float(np.abs(((cy - radius) % (2 * (size - 2 * radius))) - (size - 2 * radius)) + radius)
        a = float(np.clip(angle + spin * t, -look.max_rotation, look.max_rotation))
        # the object only touches its bounding box (+1 px of anti-aliasing): draw there only
        y0, y1 = max(0, int(cy - radius) - 2), min(size, int(cy + radius) + 3)
        x0, x1 = max(0, int(cx - radius) - 2), min(size, int(cx + radius) + 3)
        dx, dy = (xx[y0:y1, x0:x1] - cx) / radius, (yy[y0:y1, x0:x1] - cy) / radius
        u, v = dx * np.cos(a) + dy * np.sin(a), -dx * np.sin(a) + dy * np.cos(a)
        alpha = np.clip(0.5 - _shape_sdf(label, u, v) * radius, 0.0, 1.0)[..., None]
        stripes = np.cos(2 * np.pi * (u * radius * (size / FRAME_SIZE) ** -1) / STRIPE_PERIOD[label])
        obj = colour * (1 + stripe_amp * stripes[..., None]) + shade * u[..., None]
        img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - alpha) + obj * alpha
        if occluder:
            dist = (xx * np.cos(occ_theta) + yy * np.sin(occ_theta)) - (occ_pos + occ_vel * t) % (size * 1.4)
            occ_alpha = np.clip(occ_w / 2 - np.abs(dist) + 0.5, 0, 1)[..., None]
            img = img * (1 - occ_alpha) + occ_colour * occ_alpha
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(noise_sigma)
        frames[t] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return frames


def clip_labels(seed: int, split: str, n_clips: int, prior: tuple[float, ...] = DEPLOY_PRIOR) -> np.ndarray:
    """The class of every clip of a split (drawn from ``prior``), int32 [n_clips]."""
    rng = np.random.default_rng([seed, SPLITS[split], 1 << 30])
    p = np.asarray(prior, np.float64)
    return rng.choice(NUM_CLASSES, size=n_clips, p=p / p.sum()).astype(np.int32)


def make_split(
    seed: int,
    split: str,
    n_clips: int,
    frames_per_clip: int,
    prior: tuple[float, ...] = DEPLOY_PRIOR,
    size: int = FRAME_SIZE,
    first_clip: int = 0,
) -> Batch:
    """All frames of clips ``first_clip .. first_clip + n_clips - 1`` of a split, with labels."""
    labels = clip_labels(seed, split, first_clip + n_clips, prior)[first_clip:]
    frames = np.concatenate(
        [render_clip(seed, split, first_clip + i, int(lab), frames_per_clip, size) for i, lab in enumerate(labels)]
    )
    clip_ids = np.repeat(np.arange(first_clip, first_clip + n_clips, dtype=np.int32), frames_per_clip)
    return Batch(frames, np.repeat(labels, frames_per_clip).astype(np.int32), clip_ids)


#: Pixel statistics of the synthetic frames, used to centre network inputs.
PIXEL_MEAN = 0.5
PIXEL_SCALE = 4.0


def sample_frames(seed: int, n: int, frames_per_clip: int = 1) -> tuple[np.ndarray, list[int]]:
    """``n`` frames of 'samples'-split clips (deployment class prior) and their labels.

    What the workloads cycle through when measured: clips never trained on, uint8 [n, H, W, 3]. One
    frame per clip by default, so the frames are independent and a run's top-1 over them is a
    measurement with a binomial interval (consecutive frames of one clip mostly share their answer).
    """
    clips = -(-n // frames_per_clip)
    split = make_split(seed, "samples", clips, frames_per_clip, DEPLOY_PRIOR)
    return split.frames[:n], [int(x) for x in split.labels[:n]]
