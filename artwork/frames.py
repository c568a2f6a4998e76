"""Mine candidate artwork frames from a title's video.

What is sampled (decoding every frame of a two-hour film would take longer than the film):

* The file is demuxed once from start to end, but only **keyframes** are decoded: packets the
  container flags as keyframes (I/IDR frames) are sent to the decoder alone; every other
  packet is skipped without decoding, except likely cuts and long GOPs (both below). A
  keyframe decodes without any other frame, and common encoders place one at most every
  ~2–10 s *and* at scene cuts (x264/x265 scene-cut detection, on by default), so keyframes see
  most shots at a small fraction of the cost. Keyframe frame times are exact presentation
  timestamps.
* **Thinning:** a keyframe less than `min_interval` (0.5 s) after the last decoded one is
  skipped, unless the next keyframe is more than 2 x `min_interval` after the last decoded
  one (so an all-intra file, e.g. MJPEG, is sampled about twice a second instead of fully
  decoded, while a keyframe at a cut right after a flash frame is kept).
* **Long-GOP fallback:** when no keyframe arrives for more than `max_keyframe_gap` (15 s) of
  video, that group of pictures is decoded in full from its keyframe until the next keyframe
  and one frame every `dense_interval` (1 s) is analysed, so a file with rare keyframes is
  still covered, at the cost of decoding those stretches.
* **Cuts inside a GOP:** an encoder that does not put a keyframe at every cut (scene-cut
  detection off, as in fixed-length streaming segments, or not triggered by the content)
  leaves cuts between keyframes. The first frame after such a cut predicts poorly from the
  old shot, so it is coded mostly intra and its packet is much larger than its neighbours'.
  Packet sizes are known from demuxing alone, so within each group of pictures a packet at
  least `spike_ratio` (4) times the median size of the `spike_window` (8) packets either side
  and at least `spike_key_fraction` (0.3) of its keyframe's size counts as a likely cut (at most
  one per `dense_interval` of the GOP, the largest first). Each one is decoded out of
  context: sent to a second decoder right after its GOP's keyframe (and the earlier likely
  cuts), without the frames in between, so it costs one frame's decode (that GOP's keyframe is
  decoded by the second decoder instead of the main one; the second decoder is drained and
  flushed after each such GOP, the main one never, and the pictures of both are merged in
  time order). Its intra-coded blocks show the new shot; its inter-coded blocks are predicted
  from the keyframe (or the earlier likely cut) instead of the frame before, so the analysis
  copy is approximate: close when the encoder coded the cut frame almost all intra, as for
  detailed pictures, but on flat content that the encoder predicted partly from the old shot
  part of it still shows the old shot. Such a frame therefore only counts as a sample where it
  starts a new shot (see Shots). The frame finally chosen is re-read exactly (below). The
  decoder's complaints about these packets do not count as corrupt data. A cut whose packet
  does not stand out (into a much simpler shot, or hidden by heavy grain) is still found at
  the next keyframe.
* Each sampled frame is converted once to an RGB analysis copy `analysis_width` (320) pixels
  wide (area-averaged); shot detection, quality measures and embeddings use that copy. The
  frames finally chosen are decoded again at full resolution by seeking to their timestamps.

Shots: a new shot starts where the colour histogram (8x8x8 RGB bins) of a sampled frame
differs from the previous sample's by a total-variation distance of at least `cut_threshold`.
So shot boundaries are located to within the spacing of the samples around them. Out-of-context
frames (likely cuts) are evidence, not exact pictures: one starts a new shot if it differs from
the sample before it, and is otherwise ignored (for shots and selection). At the next exactly
decoded keyframe: if no likely cut started a shot since the last exact sample, the two exact
keyframes are compared; if one did and the keyframe is back to the shot before it, that is a
second cut; otherwise the change is already a boundary, and a second one at the keyframe needs
a distance of at least `ooc_cut_threshold` (0.9) from the likely cut, since part of that
picture may come from the wrong reference (a cut into a third shot that differs less, at or
just before that keyframe, is then merged into the likely cut's shot).

Selection: per sample, `artwork.quality.measure` (on the picture inside letterbox bars);
samples that are black, fading, mostly text, too dark/bright/flat or too soft (absolute
Laplacian-variance floor, and a floor relative to the video's median) are dropped; each shot
keeps its highest-scoring frame; the best `pool_size` shots are embedded; near-duplicates
(cosine similarity >= `duplicate_similarity`, e.g. a shot the film returns to) keep only the
better frame; and maximal marginal relevance picks the final `max_candidates` for quality and
diversity. Nothing is returned until the whole file has been read without error, so a caller
that stores the result stores all of it or nothing.

Faces (when `mine_frames` is given a face scorer, as `artwork frames` does with the title's cast
gallery): analysis copies are too small for the face detector (a face must be ~80 px at its
working size), so faces are looked for on full-resolution frames, and only on the shots that can
be chosen. Each shot keeps up to `face_alternates` of its usable samples, spread over its length
(the best of each part, the shot's best among them), because a face may be in some of a shot's
frames and not others. Before selection, the alternates of the best `face_shots` x
`max_candidates` shots are decoded again at full resolution and scanned (artwork/faces.py); a
frame's relevance becomes its quality score plus `face_weight` x its face bonus (`face_bonus`:
a recognised cast member beats an unknown face, which beats none; a face looking at the camera
beats one turned away, a sharp face a soft one). A shot's relevance is its most relevant
alternate's, and maximal marginal relevance weighs it against diversity as before (similarity
still measured on each shot's best-quality frame); the shot is then represented by that
alternate, whose analysis copy is embedded again. One frame per shot, so a face never buys a
second frame of the same shot; a shot chosen without having been scanned (diversity can pick a
lower-ranked shot) gets its alternates scanned before its frame is fixed. Without a face
anywhere, the frames chosen are the same as without a scorer.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator, Sequence

import av
import numpy as np
from PIL import Image

from artwork import quality as Q
from artwork.faces import FaceModel, FaceScan, face_sharpness
from artwork.progress import progress_bar

EmbedFn = Callable[[list[Image.Image]], np.ndarray]


class FramesError(ValueError):
    """The file cannot be mined for frames; the message names the file and what is wrong."""


@dataclass
class FrameConfig:
    """Sampling, shot detection, quality thresholds and selection settings for `mine_frames`."""

    # sampling (see the module docstring)
    min_interval: float = 0.5
    max_keyframe_gap: float = 15.0
    dense_interval: float = 1.0
    spike_ratio: float = 4.0  # <= 0: no likely-cut decoding inside GOPs
    spike_window: int = 8
    spike_key_fraction: float = 0.3
    analysis_width: int = 320
    # shots
    cut_threshold: float = 0.35
    ooc_cut_threshold: float = 0.9  # a second cut right after an out-of-context one (docstring)
    # quality thresholds (sharpness is measured on the analysis copy)
    min_sharpness: float = 25.0
    min_relative_sharpness: float = 0.1
    min_brightness: float = 0.06
    max_brightness: float = 0.94
    min_contrast: float = 0.04
    drop_text: bool = True
    drop_fade: bool = True
    # selection
    pool_size: int = 96
    duplicate_similarity: float = 0.92
    mmr_lambda: float = 0.7
    # faces, with a face scorer only (see "Faces" in the module docstring)
    face_alternates: int = 3  # frames per shot scanned for faces at full resolution
    face_shots: float = 3.0  # shots scanned before selection, as a multiple of max_candidates
    face_weight: float = 0.5  # relevance = quality score + face_weight x face bonus (0..1)
    # bad input: fraction of decoded packets allowed to fail before the file counts as corrupt
    max_error_fraction: float = 0.05
    # filled in by `mine_frames` when set: why sampled frames were dropped (see `SampleStats`)
    stats: "SampleStats | None" = field(default=None, repr=False, compare=False)


@dataclass
class SampleStats:
    """How many analysed samples each quality rule dropped (the first rule that failed counts)."""

    analysed: int = 0
    passed: int = 0
    black: int = 0
    fade: int = 0
    text: int = 0
    dark: int = 0
    bright: int = 0
    flat: int = 0
    soft: int = 0
    blurred: int = 0  # shots whose best frame was far softer than the video's median (relative floor)

    def explain(self) -> str:
        """One line: why nothing usable came out of the sampled frames."""
        if self.analysed == 0:
            return "no frame could be sampled"
        labels = (("black", "black"), ("fade", "fading"), ("text", "mostly text"), ("dark", "too dark"),
                  ("bright", "too bright"), ("flat", "flat (too little contrast)"), ("soft", "blurred (too soft)"))
        parts = [f"{getattr(self, k)} {label}" for k, label in labels if getattr(self, k)]
        if self.blurred:
            parts.append(f"{self.blurred} shot(s) far softer than the video's median sharpness")
        return f"all {self.analysed} sampled frames were rejected: " + (", ".join(parts) or "no usable frame")

    def count(self, q: dict[str, float | bool], cfg: FrameConfig) -> bool:
        """Record one analysed sample; True when it passes the quality rules (`_passes`)."""
        self.analysed += 1
        b = float(q["brightness"])
        why = ("black" if q["black"] else "fade" if cfg.drop_fade and q["fade"] else
               "text" if cfg.drop_text and q["text"] else "dark" if b < cfg.min_brightness else
               "bright" if b > cfg.max_brightness else "flat" if float(q["contrast"]) < cfg.min_contrast else
               "soft" if float(q["sharpness"]) < cfg.min_sharpness else None)
        if why is None:
            self.passed += 1
            return True
        setattr(self, why, getattr(self, why) + 1)
        return False


@dataclass(frozen=True)
class FrameFace:
    """What the faces of one full-resolution frame are worth to frame mining (`face_bonus`)."""

    bonus: float  # 0: no face; 0.25..0.5: the best face is unknown; 0.5..1: it is a cast member
    faces: int  # faces found
    cast: tuple[str, ...] = ()  # cast members recognised
    frontal: bool = False  # the face that earned the bonus looks at the camera
    sharpness: float = 0.0  # Laplacian variance of that face (`faces.face_sharpness`)

    def to_json(self) -> dict:
        return {"bonus": round(self.bonus, 4), "faces": self.faces, "cast": list(self.cast),
                "frontal": self.frontal, "sharpness": round(self.sharpness, 1)}


FaceScorer = Callable[[Image.Image], FrameFace]

#: Face-region sharpness at which a face counts as fully sharp (`face_bonus`): a sharp face on the
#: sample photos and frames measures 600-2000, the same face blurred by 3 px about 240.
SHARP_FACE = 500.0


def face_bonus(scan: FaceScan, image: Image.Image, cast_faces: dict[int, str] | None = None) -> FrameFace:
    """The frame's face bonus: its best face's, where a face is worth

        tier x (0.5 + 0.25 frontal + 0.25 sharp),  tier 1 for a cast member, 0.5 for anyone else

    (frontal: 1 when it looks at the camera, 0 when turned; sharp: its face-region sharpness over
    `SHARP_FACE`, capped at 1). So any cast face (0.5..1) outranks any unknown face (0.25..0.5),
    which outranks no face (0); within a tier a frontal, sharp face wins. `cast_faces`: face index
    -> the cast member recognised in it.
    """
    cast_faces = cast_faces or {}
    best = FrameFace(0.0, len(scan.faces))
    for i, f in enumerate(scan.faces):
        sharp = face_sharpness(image, f)
        tier = 1.0 if i in cast_faces else 0.5
        value = tier * (0.5 + 0.25 * f.frontal + 0.25 * min(1.0, sharp / SHARP_FACE))
        if value > best.bonus:
            best = FrameFace(value, len(scan.faces), (), f.frontal, sharp)
    cast = tuple(sorted(set(cast_faces.values())))
    return FrameFace(best.bonus, best.faces, cast, best.frontal, best.sharpness)


class FrameFaces:
    """A face scorer for `mine_frames`: scans a frame and recognises a title's cast in it.

    gallery: anything with `match(scan) -> {name: ActorMatch}` (artwork.tagging.FaceGallery), or
    None when the title has no cast yet (then every face is an unknown face).
    """

    def __init__(self, model: FaceModel, gallery=None):
        self.model = model
        self.gallery = gallery
        self.scanned = 0  # frames scanned (tests check the scan stays bounded)

    def __call__(self, image: Image.Image) -> FrameFace:
        self.scanned += 1
        scan = self.model.scan(image)
        cast: dict[int, str] = {}
        if self.gallery is not None and scan.faces:
            for name, m in self.gallery.match(scan).items():
                if m.present and m.face is not None:
                    cast[m.face] = name
        return face_bonus(scan, image, cast)


@dataclass
class FrameCandidate:
    """One chosen frame: the full-resolution picture (letterbox bars cropped) and where it came from."""

    image: Image.Image
    timestamp: float  # seconds from the start of the video stream
    shot_index: int
    quality: dict[str, float | bool]
    embedding: np.ndarray | None  # of the analysis copy, by the `embed` function used
    video: str = ""
    crop: tuple[int, int, int, int] | None = None  # (left, top, right, bottom) in source pixels
    face: FrameFace | None = None  # set when mined with a face scorer

    @property
    def source(self) -> str:
        """Catalog source string, "video:<file name>@<seconds>"."""
        return f"video:{Path(self.video).name}@{self.timestamp:.3f}"

    @property
    def meta(self) -> dict:
        """JSON-ready metadata to store with the candidate."""
        return {
            "video": str(self.video),
            "timestamp": round(self.timestamp, 3),
            "shot_index": self.shot_index,
            "crop": list(self.crop) if self.crop else None,
            "quality": {k: (bool(v) if isinstance(v, (bool, np.bool_)) else round(float(v), 4))
                        for k, v in self.quality.items()},
            **({"face": self.face.to_json()} if self.face is not None else {}),
        }


@dataclass
class VideoScan:
    """What one pass over a video saw: sample times and shot boundaries (seconds)."""

    path: str
    duration: float
    sample_times: list[float]
    boundaries: list[float]  # time of the first sample of each shot after the first
    frames_decoded: int
    packets: int
    keyframes: int
    dense_seconds: float = 0.0  # video time decoded in full by the long-GOP fallback
    likely_cuts: int = 0  # packets inside GOPs decoded out of context as likely cuts


@dataclass
class _Sample:
    pts: int
    time: float
    rgb: np.ndarray | None  # analysis copy (kept for a shot's best sample only)
    shot: int = 0
    quality: dict[str, float | bool] = field(default_factory=dict)
    box: tuple[int, int, int, int] = (0, 0, 0, 0)  # letterbox (top, bottom, left, right) in analysis pixels
    size: tuple[int, int] = (0, 0)  # analysis copy (width, height)
    alts: list["_Sample"] = field(default_factory=list)  # the shot's other face alternates (best sample only)

    @property
    def score(self) -> float:
        return float(self.quality["score"])


def _spread(samples: list[_Sample], k: int) -> list[_Sample]:
    """Up to k samples spread over the shot: the best of each of k consecutive parts, best first."""
    if k <= 1 or len(samples) <= 1:
        return [max(samples, key=lambda s: s.score)] if samples else []
    parts = np.array_split(np.arange(len(samples)), min(k, len(samples)))
    picks = [max((samples[i] for i in part), key=lambda s: s.score) for part in parts if len(part)]
    return sorted(picks, key=lambda s: (-s.score, s.pts))


# ---------------------------------------------------------------------------------------------
# opening and validating


def _open(path: str | Path) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    p = Path(path)
    name = p.name
    if not p.exists():
        raise FramesError(f"{name}: file not found")
    if not p.is_file():
        raise FramesError(f"{name}: not a regular file")
    if p.stat().st_size == 0:
        raise FramesError(f"{name}: empty file (zero length), not a video")
    try:
        container = av.open(str(p), "r")
    except av.error.EOFError as e:
        raise FramesError(f"{name}: ends before any video data (zero-length or truncated video)") from e
    except av.error.FFmpegError as e:
        with open(p, "rb") as fh:
            head = fh.read(12)
        if head[4:8] == b"ftyp":
            # MP4/MOV whose index ("moov" box, often written last) is missing: a cut-off download.
            raise FramesError(f"{name}: truncated or damaged MP4/MOV file, its index cannot be read ({_why(e)})") from e
        raise FramesError(f"{name}: not a video file FFmpeg can read ({_why(e)})") from e
    try:
        fmt = container.format.name
        # Still images open as one-frame "videos" through FFmpeg's image demuxers.
        if fmt.endswith("_pipe") or fmt == "image2":
            raise FramesError(f"{name}: a still image ({fmt}), not a video")
        if fmt == "tty":  # FFmpeg's last-resort demuxer renders any text file as "ANSI art" video
            raise FramesError(f"{name}: not a video (looks like a text file)")
        streams = [s for s in container.streams.video if not _is_cover_art(s)]
        if not streams:
            kinds = sorted({s.type for s in container.streams})
            what = "audio only" if kinds == ["audio"] else ("no streams" if not kinds else "streams: " + ", ".join(kinds))
            raise FramesError(f"{name}: no video stream ({what})")
        stream = streams[0]
        cc = stream.codec_context
        if cc is None or cc.name in ("none", ""):
            raise FramesError(f"{name}: unsupported video codec ({_codec_tag(stream)})")
    except FramesError:
        container.close()
        raise
    except (av.error.FFmpegError, ValueError) as e:  # Codec() raises for unknown decoders
        container.close()
        raise FramesError(f"{name}: unsupported video codec ({_codec_tag(stream)}; {_why(e)})") from e
    stream.thread_type = "AUTO"
    return container, stream


def _is_cover_art(stream: av.stream.Stream) -> bool:
    try:
        return bool(stream.disposition & av.stream.Disposition.attached_pic)
    except (AttributeError, TypeError):
        return False


def _codec_tag(stream: av.stream.Stream) -> str:
    cc = stream.codec_context
    return f"codec {cc.name!r}" if cc is not None and cc.name not in ("", "none") else "codec not known to this FFmpeg build"


def _why(e: BaseException) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return str(msg).split(": '")[0].strip()


def _duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return None


# ---------------------------------------------------------------------------------------------
# sampling


class _Sampler:
    """Yields the decoded frames to analyse, following the policy in the module docstring."""

    def __init__(
        self,
        path: str | Path,
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        config: FrameConfig,
        every_frame: bool = False,
        on_time: Callable[[float], None] | None = None,
    ) -> None:
        self.name = Path(path).name
        self.container, self.stream, self.config = container, stream, config
        self.every_frame = every_frame
        self.on_time = on_time
        self.tb = float(stream.time_base or Fraction(1, 1))
        self.start = stream.start_time or 0
        self.out_of_context: set[int] = set()  # pts of the likely cuts decoded out of context
        self.packets = self.keyframes = self.sent = self.errors = self.frames = 0
        self.last_packet_time = 0.0
        self.dense_seconds = 0.0
        self.likely_cuts = 0
        self._wanted: set[int] = set()
        self._last_sent = -math.inf
        self._last_yield = -math.inf
        self._side: av.CodecContext | None = None
        self._held: list[av.VideoFrame] = []  # side-decoder pictures waiting for their turn

    def time_of(self, ts: int | None) -> float | None:
        return None if ts is None else (ts - self.start) * self.tb

    def _send(self, packet: av.Packet | None, out_of_context: bool = False,
              ctx: av.CodecContext | None = None) -> list[av.VideoFrame]:
        if packet is not None:
            self.sent += 1
        try:
            return (ctx or self.stream.codec_context).decode(packet)
        except av.error.EOFError:
            return []
        except av.error.FFmpegError as e:
            if out_of_context:  # its references were skipped on purpose: not a sign of corruption
                self.sent -= 1
                return []
            # A few damaged packets are survivable (the next keyframe resynchronises); many
            # mean the file is corrupt, and then nothing from it should be trusted.
            self.errors += 1
            if self.errors > max(3, self.config.max_error_fraction * self.sent):
                raise FramesError(f"{self.name}: corrupt video data, {self.errors} packets failed to decode ({_why(e)})") from e
            return []

    def _side_decoder(self) -> av.CodecContext:
        """A second decoder for GOPs with likely cuts, so the main one never has to be flushed."""
        if self._side is None:
            main = self.stream.codec_context
            side = av.CodecContext.create(main.name, "r")
            if main.extradata:
                side.extradata = main.extradata
            side.thread_type = "SLICE"  # no frame-threading delay: its pictures come out at the drain
            self._side = side
        return self._side

    def _out(self, frames: list[av.VideoFrame]) -> Iterator[av.VideoFrame]:
        """Frames from the main decoder (in time order), merged with the side decoder's held ones."""
        for f in frames:
            if f.pts is not None:
                while self._held and self._held[0].pts < f.pts:
                    yield from self._pick(self._held.pop(0))
            yield from self._pick(f)

    def _release(self) -> Iterator[av.VideoFrame]:
        while self._held:
            yield from self._pick(self._held.pop(0))

    def _pick(self, f: av.VideoFrame) -> Iterator[av.VideoFrame]:
        self.frames += 1
        t = self.time_of(f.pts)
        if t is None:
            return
        if self.every_frame or f.pts in self._wanted or t - self._last_yield >= self.config.dense_interval - 1e-6:
            self._wanted.discard(f.pts)
            self._last_yield = t
            yield f

    def _likely_cuts(self, gop: list[av.Packet]) -> list[av.Packet]:
        """Packets inside a GOP whose size spikes like the first frame of a new shot's (decode order)."""
        cfg = self.config
        if cfg.spike_ratio <= 0 or len(gop) < 3:
            return []
        sizes = np.array([p.size for p in gop[1:]], np.float64)
        floor = cfg.spike_key_fraction * gop[0].size
        w = max(1, cfg.spike_window)
        found: list[tuple[float, int]] = []
        for i in np.flatnonzero(sizes >= floor):
            if gop[1 + i].pts is None:
                continue
            around = np.concatenate([sizes[max(0, i - w):i], sizes[i + 1:i + 1 + w]])
            ratio = sizes[i] / max(1.0, float(np.median(around)))
            if ratio >= cfg.spike_ratio:
                found.append((ratio, int(i)))
        if not found:
            return []
        times = [self.time_of(p.pts) for p in gop if p.pts is not None]
        span = (max(times) - min(times)) if times else 0.0
        keep = max(1, int(span / cfg.dense_interval) + 1)
        chosen = sorted(i for _, i in sorted(found, reverse=True)[:keep])
        return [gop[1 + i] for i in chosen]

    def _resolve(self, gop: list[av.Packet], next_time: float) -> Iterator[av.VideoFrame]:
        """Decide on a pending GOP (keyframe first) once the time of the next keyframe is known."""
        key = gop[0]
        kt = self.time_of(key.pts if key.pts is not None else key.dts) or 0.0
        gap = self.config.min_interval
        take_key = not (kt - self._last_sent < gap and next_time - self._last_sent <= 2 * gap)
        cuts = self._likely_cuts(gop)
        if not take_key and not cuts:
            return
        if take_key:
            self._last_sent = kt
            if key.pts is not None:
                self._wanted.add(key.pts)
        if not cuts:
            yield from self._out(self._send(key))
            return
        # The keyframe and its likely cuts go to a second decoder (a thinned keyframe too: they
        # are predicted from it), drained and flushed after each such GOP, while the main decoder
        # keeps its pipeline. Their pictures wait in time order for the main decoder's output to
        # pass them, so frames still come out in time order.
        side = self._side_decoder()
        frames = self._send(key, ctx=side)
        for p in cuts:
            self.likely_cuts += 1
            self._wanted.add(p.pts)
            self.out_of_context.add(p.pts)
            frames += self._send(p, out_of_context=True, ctx=side)
        frames += self._send(None, ctx=side)
        side.flush_buffers()
        self._held = sorted(self._held + [f for f in frames if f.pts is not None], key=lambda f: f.pts)

    def __iter__(self) -> Iterator[av.VideoFrame]:
        cfg = self.config
        pending: list[av.Packet] = []  # a keyframe and the packets after it, not yet decoded
        dense = False
        dense_from = 0.0
        try:
            for packet in self.container.demux(self.stream):
                if packet.size == 0:  # the demuxer's end-of-stream marker
                    continue
                self.packets += 1
                ts = packet.pts if packet.pts is not None else packet.dts
                t = self.time_of(ts)
                if t is not None:
                    self.last_packet_time = max(self.last_packet_time, t)
                    if self.on_time:
                        self.on_time(t)
                if self.every_frame:
                    yield from self._out(self._send(packet))
                    continue
                if packet.is_keyframe:
                    self.keyframes += 1
                    if dense:
                        dense = False
                        self.dense_seconds += (t if t is not None else self.last_packet_time) - dense_from
                    elif pending:
                        yield from self._resolve(pending, t if t is not None else self.last_packet_time)
                    pending = [packet]
                    continue
                if dense:
                    yield from self._out(self._send(packet))
                    continue
                if not pending:
                    continue  # before the first keyframe: cannot be decoded on its own
                pending.append(packet)
                kt = self.time_of(pending[0].pts if pending[0].pts is not None else pending[0].dts)
                if t is not None and kt is not None and t - kt > cfg.max_keyframe_gap:
                    # A long GOP: decode it from its keyframe so the stretch is not skipped.
                    dense, dense_from = True, kt
                    self._last_sent = kt
                    for p in pending:
                        yield from self._out(self._send(p))
                    pending = []
            if pending:
                yield from self._resolve(pending, math.inf)
            if dense:
                self.dense_seconds += self.last_packet_time - dense_from
            yield from self._out(self._send(None))
            yield from self._release()
        except FramesError:
            raise
        except av.error.FFmpegError as e:
            raise FramesError(f"{self.name}: truncated or corrupt after {self.last_packet_time:.1f}s ({_why(e)})") from e


def _analysis_copy(frame: av.VideoFrame, width: int) -> np.ndarray:
    w = min(width, frame.width)
    h = max(2, int(round(frame.height * w / frame.width / 2)) * 2)
    return frame.to_ndarray(width=w, height=h, format="rgb24", interpolation="AREA")


def colour_histogram(rgb: np.ndarray, bins: int = 8) -> np.ndarray:
    """Normalised joint RGB histogram (bins^3 entries summing to 1), for shot detection."""
    q = (rgb.reshape(-1, 3) // (256 // bins)).astype(np.int64)
    idx = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
    hist = np.bincount(idx, minlength=bins**3).astype(np.float64)
    return hist / hist.sum()


class _ShotDetector:
    """Shot boundaries from the sampled frames' colour histograms (see "Shots" in the module docstring)."""

    def __init__(self, config: FrameConfig) -> None:
        self.cfg = config
        self.prev: np.ndarray | None = None  # the previous sample's histogram
        self.exact: np.ndarray | None = None  # the last exactly decoded sample's histogram
        self.since_exact = False  # out-of-context samples since the last exact one
        self.cut_since_exact = False  # ... and one of them started a shot

    def new_shot(self, hist: np.ndarray, out_of_context: bool) -> bool | None:
        """Whether this sample (the next in time order) starts a new shot; None: ignore the sample.

        An out-of-context sample that does not start a shot is ignored (for shots and selection):
        either its spike was not a cut, or its picture is too wrong to show one.
        """
        thr = self.cfg.cut_threshold
        d = (lambda a, b: 0.5 * float(np.abs(a - b).sum()))
        prev, cut = self.prev, False
        if prev is None:
            pass
        elif out_of_context:
            if d(prev, hist) < thr:
                return None
            cut = self.cut_since_exact = True
        elif not self.since_exact:
            cut = d(prev, hist) >= thr
        elif not self.cut_since_exact:
            # Only false spikes since the last exact sample: compare the exact pictures.
            cut = d(self.exact, hist) >= thr
        elif self.exact is not None and d(self.exact, hist) < thr:
            # Back to the shot before the out-of-context cut (A, B, A): a cut unless that sample
            # was the same picture all along.
            cut = d(prev, hist) >= thr
        else:
            # The change since the last exact sample is already a boundary, at the likely cut. Part
            # of that out-of-context picture came from the wrong reference, so only a very large
            # difference counts as a second cut.
            cut = d(prev, hist) >= max(thr, self.cfg.ooc_cut_threshold)
        self.prev = hist
        if out_of_context:
            self.since_exact = True
        else:
            self.exact, self.since_exact, self.cut_since_exact = hist, False, False
        return cut


def _check_complete(sampler: _Sampler, declared: float | None) -> None:
    name = sampler.name
    if sampler.frames == 0:
        raise FramesError(f"{name}: no decodable video frames (zero-length or damaged video)")
    # A cut-off file still opens when its index is at the front (or is rebuilt from the
    # stream), but the packets stop early; the declared duration gives it away.
    if declared and declared > 1.0 and sampler.last_packet_time < 0.9 * declared - 0.5:
        raise FramesError(
            f"{name}: truncated: video data ends at {sampler.last_packet_time:.1f}s "
            f"of a declared {declared:.1f}s"
        )


class _TimeBar:
    """The project's progress bar (artwork.progress) driven by absolute positions in the video."""

    def __init__(self, total: float | None, name: str):
        self._cm = progress_bar(total, f"frames {name}", unit="video-s")  # None: length unknown
        self._advance = self._cm.__enter__()
        self._at = 0.0

    def to(self, t: float) -> None:
        if t > self._at:
            self._advance(t - self._at)
            self._at = t

    def stop(self) -> None:
        self._cm.__exit__(None, None, None)


def scan_video(path: str | Path, config: FrameConfig | None = None, every_frame: bool = False) -> VideoScan:
    """Shot boundaries as the sampler sees them (every_frame=True: decoding every frame instead).

    Used by the benchmark to check that sampling finds the same shots as a full decode.
    """
    config = config or FrameConfig()
    container, stream = _open(path)
    try:
        declared = _duration(container, stream)
        sampler = _Sampler(path, container, stream, config, every_frame=every_frame)
        times: list[float] = []
        boundaries: list[float] = []
        shots = _ShotDetector(config)
        for frame in sampler:
            t = sampler.time_of(frame.pts)
            hist = colour_histogram(_analysis_copy(frame, config.analysis_width))
            cut = shots.new_shot(hist, frame.pts in sampler.out_of_context)
            if cut is None:
                continue
            if cut:
                boundaries.append(t)
            times.append(t)
        _check_complete(sampler, declared)
    finally:
        container.close()
    return VideoScan(str(path), declared or sampler.last_packet_time, times, boundaries, sampler.frames,
                     sampler.packets, sampler.keyframes, sampler.dense_seconds, sampler.likely_cuts)


# ---------------------------------------------------------------------------------------------
# selection


def colour_layout_embedding(images: Sequence[Image.Image]) -> np.ndarray:
    """A cheap stand-in for CLIP: each image as a 12x8 colour thumbnail, centred and L2-normalised.

    Good enough to spot near-duplicate frames (the same shot seen twice) and to spread a
    selection over different-looking shots; pass a real encoder's `embed_images` for semantics.
    """
    rows = []
    for im in images:
        a = np.asarray(im.convert("RGB").resize((12, 8), Image.BOX), np.float32) / 255.0 - 0.5
        v = a.ravel()
        rows.append(v / max(1e-8, float(np.linalg.norm(v))))
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, 288), np.float32)


def _passes(q: dict[str, float | bool], cfg: FrameConfig) -> bool:
    if q["black"] or (cfg.drop_fade and q["fade"]) or (cfg.drop_text and q["text"]):
        return False
    return (
        cfg.min_brightness <= float(q["brightness"]) <= cfg.max_brightness
        and float(q["contrast"]) >= cfg.min_contrast
        and float(q["sharpness"]) >= cfg.min_sharpness
    )


def drop_near_duplicates(embeddings: np.ndarray, order: Sequence[int], threshold: float) -> list[int]:
    """Walk `order` (best first) and keep an item unless it is >= threshold cosine-similar to a kept one."""
    kept: list[int] = []
    for i in order:
        if kept and float(np.max(embeddings[kept] @ embeddings[i])) >= threshold:
            continue
        kept.append(i)
    return kept


def mmr_select(relevance: np.ndarray, embeddings: np.ndarray, k: int, lam: float = 0.7) -> list[int]:
    """Maximal marginal relevance: greedily pick argmax lam*rel - (1-lam)*max sim to those picked."""
    chosen: list[int] = []
    left = list(range(len(relevance)))
    while left and len(chosen) < k:
        if chosen:
            sim = (embeddings[left] @ embeddings[chosen].T).max(axis=1)
        else:
            sim = np.zeros(len(left))
        gain = lam * relevance[left] - (1.0 - lam) * sim
        best = left[int(np.argmax(gain))]
        chosen.append(best)
        left.remove(best)
    return chosen


def _embed(embed: EmbedFn, images: list[Image.Image], name: str) -> np.ndarray:
    emb = np.asarray(embed(images), dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(images):
        raise ValueError(f"embed returned shape {emb.shape} for {len(images)} images")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    return emb / np.maximum(norms, 1e-8)


def _read_full(path: str | Path, picks: list[_Sample]) -> dict[int, av.VideoFrame]:
    """Decode the chosen frames again at full resolution by seeking to each one."""
    return dict(_iter_full(path, picks))


def _iter_full(path: str | Path, picks: list[_Sample]) -> Iterator[tuple[int, av.VideoFrame]]:
    """(pts, full-resolution frame) for each sample, in time order, one frame in memory at a time."""
    container, stream = _open(path)
    name = Path(path).name
    try:
        for s in sorted(picks, key=lambda s: s.pts):
            container.seek(s.pts, stream=stream, backward=True, any_frame=False)
            got = None
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                if frame.pts >= s.pts:
                    got = frame
                    break
            if got is None:
                raise FramesError(f"{name}: could not read back the frame at {s.time:.3f}s")
            yield s.pts, got
    except av.error.FFmpegError as e:
        raise FramesError(f"{name}: failed to re-read chosen frames ({_why(e)})") from e
    finally:
        container.close()


def _full_image(s: _Sample, frame: av.VideoFrame) -> tuple[Image.Image, tuple[int, int, int, int] | None]:
    """The full-resolution picture inside the sample's letterbox bars, and that crop (None: whole frame)."""
    w, h = s.size
    top, bottom, left, right = s.box
    sx, sy = frame.width / w, frame.height / h
    crop = (round(left * sx), round(top * sy), round(right * sx), round(bottom * sy))
    image = frame.to_image()
    if crop == (0, 0, frame.width, frame.height):
        return image, None
    return image.crop(crop), crop


def _scan_shots(path: str | Path, shots: list[_Sample], faces: FaceScorer,
                weight: float) -> dict[int, tuple[_Sample, FrameFace, float]]:
    """Per shot (keyed by its best sample's pts): its most relevant alternate, that frame's faces and
    its relevance (quality score + weight x face bonus). Ties keep the better-scoring frame."""
    owner = {a.pts: (s, a) for s in shots for a in (s, *s.alts)}
    seen: dict[int, tuple[_Sample, FrameFace, float]] = {}
    for pts, frame in _iter_full(path, [a for _, a in owner.values()]):
        shot, sample = owner[pts]
        image, _ = _full_image(sample, frame)
        face = faces(image)
        value = sample.score + weight * face.bonus
        best = seen.get(shot.pts)
        if best is None or (value, sample.score) > (best[2], best[0].score):
            seen[shot.pts] = (sample, face, value)
    return seen


def mine_frames(
    video_path: str | Path,
    max_candidates: int = 12,
    config: FrameConfig | None = None,
    embed: EmbedFn | None = None,
    progress: bool = True,
    faces: FaceScorer | None = None,
) -> list[FrameCandidate]:
    """Choose up to `max_candidates` artwork frames from a video, best first.

    video_path: any file FFmpeg (PyAV) can demux with a decodable video stream.
    embed: images -> (n, d) embeddings (e.g. `load_encoder("tiny").embed_images`); None uses
        `colour_layout_embedding`. Used for near-duplicate removal and the diversity term.
    progress: show a rich progress bar over the video's duration.
    faces: full-resolution frame -> `FrameFace` (e.g. `FrameFaces(face_model(), gallery)`): prefer
        frames with cast faces, frontal and sharp, one frame per shot as before (module docstring).
        None: frames are chosen on quality and diversity alone.

    Raises FramesError (a ValueError) naming the file and the problem for missing, empty,
    non-video, audio-only, truncated, corrupt or undecodable files; it returns only after the
    whole file was read, so on error there is nothing to store.
    """
    cfg = config or FrameConfig()
    embed = embed or colour_layout_embedding
    if max_candidates < 1:
        raise ValueError("max_candidates must be at least 1")
    name = Path(video_path).name
    container, stream = _open(video_path)
    declared = _duration(container, stream)
    bar = _TimeBar(declared, name) if progress else None
    try:
        sampler = _Sampler(
            video_path, container, stream, cfg,
            on_time=bar.to if bar is not None else None,
        )
        # Per shot keep only its best usable sample; across shots keep the best pool_size in a
        # min-heap, so memory stays bounded for a feature film.
        pool: list[tuple[float, int, _Sample]] = []
        best_in_shot: _Sample | None = None
        in_shot: list[_Sample] = []  # the current shot's usable samples, without pixels
        sharpness_seen: list[float] = []
        shot, n = 0, 0
        shots = _ShotDetector(cfg)
        n_alts = cfg.face_alternates if faces is not None and cfg.face_weight > 0 else 1

        def close_shot() -> None:
            if best_in_shot is not None:
                best_in_shot.alts = [s for s in _spread(in_shot, n_alts) if s.pts != best_in_shot.pts]
                item = (float(best_in_shot.quality["score"]), best_in_shot.pts, best_in_shot)
                (heapq.heappush if len(pool) < cfg.pool_size else heapq.heappushpop)(pool, item)

        for frame in sampler:
            n += 1
            rgb = _analysis_copy(frame, cfg.analysis_width)
            hist = colour_histogram(rgb)
            cut = shots.new_shot(hist, frame.pts in sampler.out_of_context)
            if cut is None:
                continue
            if cut:
                close_shot()
                best_in_shot, in_shot = None, []
                shot += 1
            box = Q.letterbox_box(rgb)
            q = Q.measure(rgb)
            if not q["black"] and not q["fade"]:
                sharpness_seen.append(float(q["sharpness"]))
            if cfg.stats is not None:
                cfg.stats.count(q, cfg)
            if not _passes(q, cfg):
                continue
            size = (rgb.shape[1], rgb.shape[0])
            if n_alts > 1:
                in_shot.append(_Sample(frame.pts, sampler.time_of(frame.pts), None, shot, q, box, size))
            if best_in_shot is None or q["score"] > best_in_shot.quality["score"]:
                best_in_shot = _Sample(frame.pts, sampler.time_of(frame.pts), rgb, shot, q, box, size)
        close_shot()
        _check_complete(sampler, declared)
        if bar is not None:
            bar.to(declared or sampler.last_packet_time)
    finally:
        if bar is not None:
            bar.stop()
        container.close()

    # Relative floor: a frame far softer than this video's typical frame is blurred, whatever
    # the absolute number says (sharpness scale depends on content and grain).
    floor = cfg.min_relative_sharpness * float(np.median(sharpness_seen)) if sharpness_seen else 0.0
    samples = [s for _, _, s in sorted(pool, key=lambda it: (-it[0], it[1])) if float(s.quality["sharpness"]) >= floor]
    if cfg.stats is not None:
        cfg.stats.blurred += len(pool) - len(samples)
    if not samples:
        return []
    for s in samples:
        s.alts = [a for a in s.alts if float(a.quality["sharpness"]) >= floor]
    images = [Image.fromarray(np.ascontiguousarray(s.rgb[s.box[0]:s.box[1], s.box[2]:s.box[3]])) for s in samples]
    emb = _embed(embed, images, name)
    kept = drop_near_duplicates(emb, range(len(samples)), cfg.duplicate_similarity)  # best shots first
    rel = np.array([samples[i].score for i in kept])
    scanned: dict[int, tuple[_Sample, FrameFace, float]] = {}
    if faces is not None and cfg.face_weight > 0:
        n_scan = min(len(kept), max(max_candidates, math.ceil(cfg.face_shots * max_candidates)))
        scanned = _scan_shots(video_path, [samples[i] for i in kept[:n_scan]], faces, cfg.face_weight)
        rel = np.array([scanned[samples[i].pts][2] if j < n_scan else rel[j] for j, i in enumerate(kept)])
    order = [kept[j] for j in mmr_select(rel, emb[kept], max_candidates, cfg.mmr_lambda)]
    if faces is not None and cfg.face_weight > 0:
        late = [samples[i] for i in order if samples[i].pts not in scanned]
        if late:
            scanned.update(_scan_shots(video_path, late, faces, cfg.face_weight))
    # Each chosen shot's frame: its best sample, or the alternate its faces made more relevant.
    picks = [scanned[samples[i].pts][0] if samples[i].pts in scanned else samples[i] for i in order]
    full = _read_full(video_path, picks)
    switched = [j for j, (i, s) in enumerate(zip(order, picks)) if s is not samples[i]]
    vectors = {j: emb[i] for j, i in enumerate(order)}
    if switched:  # the embedding must describe the frame actually chosen
        copies = []
        for j in switched:
            s = picks[j]
            rgb = _analysis_copy(full[s.pts], cfg.analysis_width)
            copies.append(Image.fromarray(np.ascontiguousarray(rgb[s.box[0]:s.box[1], s.box[2]:s.box[3]])))
        vectors.update(zip(switched, _embed(embed, copies, name)))

    out: list[FrameCandidate] = []
    for j, (i, s) in enumerate(zip(order, picks)):
        image, crop = _full_image(s, full[s.pts])
        face = scanned[samples[i].pts][1] if samples[i].pts in scanned else None
        out.append(FrameCandidate(image, s.time, s.shot, dict(s.quality), vectors[j], str(video_path), crop, face))
    return out
