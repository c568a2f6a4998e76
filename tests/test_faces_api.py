"""`GET /v1/titles/{id}/artworks` shows each candidate's faces: how many, which cast members were
recognised (distance and confidence) and whether the lead is visible, on a live server over a
catalog of real photographs (public domain, see tests/test_faces.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import matplotlib
import pytest
from PIL import Image

from artwork.faces import FaceModel
from artwork.ingest import Ingestor
from artwork.store import Catalog
from conftest import encode, scene
from servekit import LiveServer
from test_api_contract import Contract

ASSETS = Path(__file__).resolve().parent.parent / "artwork" / "assets"
GRACE, EILEEN = "Grace Hopper", "Eileen Collins"


def poster(left: Image.Image, right: Image.Image, height: int = 400) -> Image.Image:
    canvas = Image.new("RGB", (1200, 600), (18, 20, 36))
    for im, x in ((left, 40), (right, 640)):
        canvas.paste(im.resize((round(im.width * height / im.height), height)), (x, 100))
    return canvas


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny):
    d = tmp_path_factory.mktemp("faces-api")
    grace = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    eileen = Image.open(ASSETS / "photos" / "astronaut.jpg").convert("RGB").crop((100, 0, 360, 300))
    files = {"portrait.jpg": grace.resize((256, 300)), "pair.jpg": poster(eileen, grace),
             "coffee.jpg": Image.open(ASSETS / "photos" / "coffee.jpg").convert("RGB"),
             "grace_ref.jpg": grace.crop((60, 40, 460, 480)), "eileen_ref.jpg": eileen}
    for name, im in files.items():
        (d / name).write_bytes(encode(im, quality=90))
    store = d / "catalog.db"
    with Catalog(store) as cat:
        ing = Ingestor(cat, tiny, faces=FaceModel())
        ing.upload_files("film", [d / n for n in ("portrait.jpg", "pair.jpg", "coffee.jpg")], progress=False)
        ing.add_cast_member("film", GRACE, [d / "grace_ref.jpg"])
        ing.add_cast_member("film", EILEEN, [d / "eileen_ref.jpg"])
        # an artwork stored without a face scan, as a catalog from before faces holds them
        data = encode(scene(7))
        cat.add_artwork("film", data, hashlib.sha256(data).hexdigest(), "upload:old.jpg", 256, 192, tiny.encoder_id,
                        tiny.embed_images([scene(7)])[0], {"moods": {}, "genres": {}}, "v")
        distances = {a.source: dict(a.tags.actor_distances) for a in cat.artworks("film")}
    s = LiveServer(store).start()
    yield s, distances
    s.stop()


def test_title_artworks_show_faces_recognised_actors_and_the_lead(server):
    live, distances = server
    with live.client() as c:
        contract = Contract(c.get("/openapi.json").json())
        body = contract.check("GET", "/v1/titles/{title_id}/artworks", c.get("/v1/titles/film/artworks"), 200)
    arts = {a["source"]: a for a in body["artworks"]}
    assert set(arts) == {"upload:portrait.jpg", "upload:pair.jpg", "upload:coffee.jpg", "upload:old.jpg"}

    portrait = arts["upload:portrait.jpg"]["faces"]
    assert portrait["count"] == 1 and 0.05 < portrait["largest_share"] < 0.5 and 0.3 < portrait["largest_x"] < 0.7
    assert portrait["lead"] == GRACE and portrait["lead_visible"]  # the first actor added leads
    (actor,) = portrait["actors"]
    assert actor["name"] == GRACE and actor["lead"] and actor["confidence"] > 0.9 and actor["distance"] < 0.3
    assert actor["distance"] == pytest.approx(distances["upload:portrait.jpg"][GRACE])

    pair = arts["upload:pair.jpg"]["faces"]
    assert pair["count"] == 2 and pair["lead_visible"]
    assert {a["name"]: a["lead"] for a in pair["actors"]} == {GRACE: True, EILEEN: False}
    confidences = [a["confidence"] for a in pair["actors"]]
    assert confidences == sorted(confidences, reverse=True) and min(confidences) > 0.5
    assert all(a["distance"] < 0.45 for a in pair["actors"])  # within every calibrated threshold

    # looked and found no face: zero, not unknown; the lead is named but not visible
    coffee = arts["upload:coffee.jpg"]["faces"]
    assert coffee == {"count": 0, "largest_share": 0.0, "largest_x": None, "lead": GRACE, "lead_visible": False,
                      "actors": []}
    # never scanned: unknown, which is not the same as no face
    assert arts["upload:old.jpg"]["faces"] is None
    # the tags the endpoint already had still agree with the faces
    assert sorted(arts["upload:pair.jpg"]["tags"]["actors_present"]) == [EILEEN, GRACE]
