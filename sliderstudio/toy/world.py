"""The toy shapes world: one flat shape on a flat background, drawn procedurally.

Why a world this simple: no model weights can be downloaded where Slider Studio runs, so the
project trains its own tiny diffusion model. Every attribute of an image (shape kind, colours,
size, position, shade) is known exactly, which lets the slider metrics check from pixels alone
whether a slider moved the attribute it was trained on and left the others alone.

Everything here is deterministic: the same spec renders the same pixels, the same seed gives the
same specs.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, replace

from PIL import Image, ImageDraw

#: Shape colours (name -> RGB). Pairwise RGB distance >= ~120 so a blurry sample still lands
#: nearest to the right name.
SHAPE_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (40, 100, 240),
    "yellow": (240, 220, 30),
    "purple": (150, 40, 190),
    "cyan": (30, 210, 220),
}

#: Background colours. "blue" is a darker blue than the shape colour of that name; a shape is
#: never drawn on the background of its own colour name.
BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (240, 240, 240),
    "black": (20, 20, 20),
    "gray": (125, 125, 125),
    "blue": (30, 45, 120),
}

KINDS: tuple[str, ...] = ("circle", "square", "triangle")

#: Size range (fraction of the image width spanned by the shape) drawn by `random_spec`.
SIZE_MIN, SIZE_MAX = 0.2, 0.8


@dataclass(frozen=True)
class SizeScheme:
    """How one version of the world draws sizes and names them in captions.

    `uniform_in` says what is drawn uniformly ("width" or "area" of the bounding square, between
    SIZE_MIN and SIZE_MAX); `classes` are the caption's size words, each (word or None, upper width
    bound), smallest first.
    """

    uniform_in: str
    classes: tuple[tuple[str | None, float], ...]
    #: Std of the captioner's error in reading the area (fraction of the bounding square's range
    #: SIZE_MIN²..SIZE_MAX²): 0 names every size by its class; > 0 names sizes near a class
    #: boundary by either neighbour, as a human captioner would, so the classes overlap.
    area_noise: float = 0.0
    #: How a centre is drawn. "relative": uniformly within the box the shape's own size allows, so
    #: a big shape always sits near the middle and one that grows while keeping its relative place
    #: moves towards it. "clamped": uniformly within the box the smallest shape allows, then moved
    #: only as far as the border forces, so where a shape sits does not depend on its size beyond
    #: what the frame imposes. "central": uniformly within the box the *largest* shape allows, for
    #: every size, so a shape's place says nothing of its size and no shape is pushed to a margin.
    placement: str = "relative"


def _area_bounds(n: int) -> list[float]:
    """Widths that cut SIZE_MIN..SIZE_MAX into `n` classes of equal area."""
    lo, hi = SIZE_MIN ** 2, SIZE_MAX ** 2
    return [round((lo + (hi - lo) * k / n) ** 0.5, 4) for k in range(1, n)]


_GRADED = ("small", "slightly small", None, "slightly large", "large")
_GRADED_7 = ("tiny", "small", "slightly small", None, "slightly large", "large", "huge")

#: The world's versions. 1: widths uniform, "small" below 0.35, "large" above 0.65, nothing in
#: between (the first toy model). 2: sizes uniform in *area* and five size classes of equal area.
#: 3: world 2 read by a noisy captioner. 4: seven classes of equal area and centres drawn
#: independently of size ("clamped" placement); measured, not shipped. 5: world 4's seven classes
#: with world 2's placement. 6 (current): world 5's classes, every centre drawn from the box the
#: largest shape allows ("central" placement). Why 2 came first: in world 1 the model drew sizes in three
#: clusters and every size dial on it (a slider, or the prompt embedding moved from "small" to
#: "large") jumped between them; with five classes it has the sizes in between to name, and with area
#: (what a size slider is judged by) spread evenly over the classes, the plain prompt sits in the
#: middle of the area range, so a dial has as much room to shrink as to grow (docs/TRAINING.md, "A
#: toy model that names sizes in steps"). Why 5 now: seven narrower classes make every size dial on
#: the model more even again, and world 2's placement keeps its drift where it was (docs/TRAINING.md,
#: "World 5"). Why 6: in worlds 2 and 5 a bigger shape must sit nearer the middle, so every size dial
#: on their models moved the shape as it grew (drift about a quarter of the range); world 6 places
#: shapes of every size alike, and its model's dials keep the place (docs/TRAINING.md, "World 6").
_AREA_CLASSES = tuple(zip(_GRADED, _area_bounds(5) + [float("inf")]))
WORLDS: dict[int, SizeScheme] = {
    # world 1 said "large" only *above* 0.65: the plain class keeps 0.65 itself (sizes are rounded to
    # 4 decimals, and its training pool holds two shapes of exactly 0.65)
    1: SizeScheme("width", (("small", 0.35), (None, math.nextafter(0.65, 1.0)), ("large", float("inf")))),
    2: SizeScheme("area", _AREA_CLASSES),
    3: SizeScheme("area", _AREA_CLASSES, area_noise=0.08),
    # 4 asked whether narrower classes (an evener dial) and size-free centres (less drift) would help
    # the sliders on world 2's model; a model continued on it drew a more even but shorter dial and
    # drifted *more* (big shapes learned to sit against the margin), so it was not shipped
    # (docs/TRAINING.md, "The demo's pair captions, and world 4").
    4: SizeScheme("area", tuple(zip(_GRADED_7, _area_bounds(7) + [float("inf")])), placement="clamped"),
    # 5 is world 4's seven classes with world 2's relative placement: it tells the two halves of
    # world 4's change apart (finer classes helped, size-free centres did not); shipped until world 6.
    5: SizeScheme("area", tuple(zip(_GRADED_7, _area_bounds(7) + [float("inf")]))),
    # 6 is world 5 with centres free of size *and* of the margin: every shape sits where the largest
    # one could, so a size dial that keeps the place is the world's own rule, not a departure from it
    # (docs/TRAINING.md, "World 6").
    6: SizeScheme("area", tuple(zip(_GRADED_7, _area_bounds(7) + [float("inf")])), placement="central"),
}
WORLD = 6
#: The current world's size classes.
SIZE_CLASSES = WORLDS[WORLD].classes
#: Minimum gap (fraction of width) kept between the shape and the image border, so that the
#: border pixels always show the background (the metrics rely on it).
BORDER_MARGIN = 0.04
#: How far `shade` +-1 moves the shape colour towards white / black.
SHADE_REACH = 0.6
#: Supersampling factor used for anti-aliasing.
SUPERSAMPLE = 4


@dataclass(frozen=True)
class ShapeSpec:
    """Everything needed to draw one image.

    size is the side of the shape's bounding square as a fraction of the image width; cx, cy
    are the centre of mass as fractions of width/height (so resizing a shape about its centre
    leaves its measured centroid in place, triangles included); shade in [-1, 1] darkens (<0) or brightens (>0)
    the shape colour (0 = the named colour; captions do not mention it).
    """

    kind: str
    colour: str
    background: str
    size: float
    cx: float = 0.5
    cy: float = 0.5
    shade: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; expected one of {KINDS}")
        if self.colour not in SHAPE_COLOURS:
            raise ValueError(f"unknown shape colour {self.colour!r}")
        if self.background not in BACKGROUND_COLOURS:
            raise ValueError(f"unknown background colour {self.background!r}")
        if not 0.0 < self.size <= 1.0:
            raise ValueError(f"size must be in (0, 1], got {self.size}")
        if not -1.0 <= self.shade <= 1.0:
            raise ValueError(f"shade must be in [-1, 1], got {self.shade}")

    def to_dict(self) -> dict:
        return asdict(self)

    def with_(self, **changes: object) -> "ShapeSpec":
        """A copy with some fields changed (e.g. a bigger twin for a before/after pair)."""
        return replace(self, **changes)


def centre_range(size: float, kind: str = "circle") -> tuple[tuple[float, float], tuple[float, float]]:
    """((x_lo, x_hi), (y_lo, y_hi)): centres that keep the shape inside the border margin.

    A triangle is placed by its centroid, which sits a third of the height above its base, so
    it reaches 2/3 of its size above the centre and 1/3 below.
    """
    half = size / 2 + BORDER_MARGIN
    xs = (min(half, 0.5), max(1.0 - half, 0.5))
    if kind != "triangle":
        return xs, xs
    up, down = 2 * size / 3 + BORDER_MARGIN, size / 3 + BORDER_MARGIN
    return xs, (min(up, 1.0 - down), max(1.0 - down, up))


def draw_size(rng: random.Random, size_range: tuple[float, float], world: int = WORLD) -> float:
    """A width in `size_range`, uniform in width or in area as the world says (one draw either way)."""
    lo, hi = size_range
    if WORLDS[world].uniform_in == "area":
        return rng.uniform(lo * lo, hi * hi) ** 0.5
    return rng.uniform(lo, hi)


def random_spec(rng: random.Random, size_range: tuple[float, float] = (SIZE_MIN, SIZE_MAX),
                world: int = WORLD) -> ShapeSpec:
    """Draw one spec from the world (shape colour never equals the background name)."""
    kind = rng.choice(KINDS)
    background = rng.choice(sorted(BACKGROUND_COLOURS))
    colour = rng.choice([c for c in sorted(SHAPE_COLOURS) if c != background])
    size = draw_size(rng, size_range, world)
    cx, cy = draw_centre(rng, size, kind, world)
    return ShapeSpec(kind, colour, background, round(size, 4), round(cx, 4), round(cy, 4))


def draw_centre(rng: random.Random, size: float, kind: str, world: int = WORLD) -> tuple[float, float]:
    """A centre for a shape of `size` as the world's placement rule says (`SizeScheme.placement`).

    The demo's size pairs call it with the pair's biggest size, so both twins share one centre that
    the world could have drawn for either."""
    placement = WORLDS[world].placement
    # "relative" and "central" draw uniformly in one box: the shape's own, or the largest shape's
    (xlo, xhi), (ylo, yhi) = centre_range(SIZE_MAX if placement == "central" else size, kind)
    if placement != "clamped":
        return rng.uniform(xlo, xhi), rng.uniform(ylo, yhi)
    (fxlo, fxhi), (fylo, fyhi) = centre_range(SIZE_MIN, kind)
    return min(max(rng.uniform(fxlo, fxhi), xlo), xhi), min(max(rng.uniform(fylo, fyhi), ylo), yhi)


#: (kind, shape colour, background) the world keeps for judging sliders on prompts they never saw:
#: `toy.sweep_check` sweeps these subjects' plain prompts, and no demo project draws them
#: (`toy.demo_project`), so a held-out prompt can never also be a training caption. Every kind, shape
#: colour and background appears at least once.
EVAL_SUBJECTS: tuple[tuple[str, str, str], ...] = (
    ("square", "red", "white"), ("circle", "blue", "black"), ("triangle", "yellow", "gray"),
    ("square", "cyan", "blue"), ("triangle", "purple", "white"), ("circle", "green", "gray"),
    ("triangle", "red", "black"), ("circle", "cyan", "white"),
)


def subject(spec: ShapeSpec) -> tuple[str, str, str]:
    """(kind, shape colour, background): what a caption names besides the size."""
    return spec.kind, spec.colour, spec.background


def plain_prompt(kind: str, colour: str, background: str, size_word: str = "") -> str:
    """A subject's prompt in the captions' form, without a size word unless given (the middle class)."""
    words = ["a", *([size_word] if size_word else []), colour, kind, "on", "a", background, "background"]
    return " ".join(words)


def random_specs(seed: int, n: int, size_range: tuple[float, float] = (SIZE_MIN, SIZE_MAX),
                 world: int = WORLD) -> list[ShapeSpec]:
    """`n` specs from one seed; the training script and the held-out evaluation use disjoint seeds."""
    rng = random.Random(seed)
    return [random_spec(rng, size_range, world) for _ in range(n)]


def shape_rgb(spec: ShapeSpec) -> tuple[int, int, int]:
    """The drawn shape colour: the named colour moved towards white/black by `shade`."""
    base = SHAPE_COLOURS[spec.colour]
    target = 255 if spec.shade > 0 else 0
    t = abs(spec.shade) * SHADE_REACH
    return tuple(round(c + (target - c) * t) for c in base)  # type: ignore[return-value]


def _polygon(spec: ShapeSpec, px: float) -> list[tuple[float, float]]:
    """Corner points (in pixels of the drawing canvas) of the shape's bounding square or triangle."""
    half = spec.size * px / 2
    x, y = spec.cx * px, spec.cy * px
    if spec.kind == "triangle":  # upright isosceles, half its bounding square, centroid at (x, y)
        up, down = 4 * half / 3, 2 * half / 3
        return [(x, y - up), (x + half, y + down), (x - half, y + down)]
    return [(x - half, y - half), (x + half, y + half)]


def render(spec: ShapeSpec, size_px: int = 32) -> Image.Image:
    """Draw the spec as an RGB image of `size_px` square, anti-aliased by supersampling."""
    big = size_px * SUPERSAMPLE
    img = Image.new("RGB", (big, big), BACKGROUND_COLOURS[spec.background])
    draw = ImageDraw.Draw(img)
    pts = _polygon(spec, big)
    fill = shape_rgb(spec)
    if spec.kind == "circle":
        draw.ellipse([pts[0], pts[1]], fill=fill)
    elif spec.kind == "square":
        draw.rectangle([pts[0], pts[1]], fill=fill)
    else:
        draw.polygon(pts, fill=fill)
    return img.resize((size_px, size_px), Image.Resampling.BOX)


def size_word(size: float, world: int = WORLD) -> str | None:
    """The size words of `size`'s class ('small' … 'large'); None for the plain middle class."""
    return next(word for word, upper in WORLDS[world].classes if size < upper)


def named_size(spec: ShapeSpec, world: int = WORLD) -> float:
    """The size a caption of `world` names: the true size, or (with `area_noise`) the size read with
    an error that is fixed per spec (seeded by the spec itself), so the same spec always gets the
    same caption on every machine."""
    noise = WORLDS[world].area_noise
    if not noise:
        return spec.size
    lo, hi = SIZE_MIN ** 2, SIZE_MAX ** 2
    err = random.Random(repr(sorted(spec.to_dict().items()))).gauss(0.0, noise * (hi - lo))
    return min(max(spec.size ** 2 + err, lo), hi) ** 0.5


def caption(spec: ShapeSpec, world: int = WORLD) -> str:
    """E.g. 'a slightly large red circle on a blue background' (no size word in the middle class)."""
    words = ["a"]
    sw = size_word(named_size(spec, world), world)
    if sw:
        words.append(sw)
    words += [spec.colour, spec.kind, "on", "a", spec.background, "background"]
    return " ".join(words)
