"""The stations file: one row per station (a node of a site) with where it is and what
it watches. CSV with a header line:

    id,name,hazard_point,type,site,node,lon,lat,zone,radius_m,polygon

- type: landslide | collapse | debris_flow | subsidence | river
- zone: the village broadcast zone the station warns (fires on red)
- radius_m: the CAP <circle> radius around the station (default 500)
- polygon: optional affected area, "lon lat;lon lat;..." (closed or not); when given,
  CAP carries it as <polygon> as well as the circle.

Every problem in the file is reported at once, with the line and the column."""
import csv

TYPES = ("landslide", "collapse", "debris_flow", "subsidence", "river")
COLUMNS = ("id", "name", "hazard_point", "type", "site", "node", "lon", "lat", "zone",
           "radius_m", "polygon")


class StationsError(Exception):
    pass


class Station:
    __slots__ = COLUMNS

    def __init__(self, **kw):
        for k in COLUMNS:
            setattr(self, k, kw[k])

    def as_json(self):
        return {k: getattr(self, k) for k in COLUMNS}


def _num(s, lo, hi):
    v = float(s)
    if not lo <= v <= hi:
        raise ValueError
    return v


def load(path):
    """-> {(site, node): Station}; StationsError lists every problem."""
    errs = []
    out = {}
    ids = set()
    try:
        f = open(path, newline="", encoding="utf-8")
    except OSError as e:
        raise StationsError("%s: cannot read the stations file (%s)" % (path, e.strerror)) from None
    with f:
        rd = csv.DictReader(f)
        missing = [c for c in COLUMNS[:9] if c not in (rd.fieldnames or ())]
        if missing:
            raise StationsError("%s: header lacks column(s) %s; the header is %s" % (
                path, ", ".join(missing), ",".join(COLUMNS)))
        for row in rd:
            line = rd.line_num

            def bad(col, why, line=line):
                errs.append("%s:%d: column %s: %s" % (path, line, col, why))
            kw = {k: (row.get(k) or "").strip() for k in COLUMNS}
            if not kw["id"] or kw["id"] in ids:
                bad("id", "missing or repeated (%r)" % kw["id"])
            ids.add(kw["id"])
            if kw["type"] not in TYPES:
                bad("type", "%r is not one of %s" % (kw["type"], ", ".join(TYPES)))
            try:
                kw["node"] = int(kw["node"])
                if not 1 <= kw["node"] <= 65534:
                    raise ValueError
            except ValueError:
                bad("node", "%r is not a node id 1..65534" % kw["node"])
            for col, lo, hi in (("lon", -180, 180), ("lat", -90, 90)):
                try:
                    kw[col] = _num(kw[col], lo, hi)
                except ValueError:
                    bad(col, "%r is not a number in %g..%g" % (kw[col], lo, hi))
            try:
                kw["radius_m"] = _num(kw["radius_m"] or "500", 1, 100000)
            except ValueError:
                bad("radius_m", "%r is not a radius 1..100000 m" % kw["radius_m"])
            poly = []
            if kw["polygon"]:
                try:
                    poly = [tuple(_num(x, -180, 180) for x in p.split()) for p in
                            kw["polygon"].split(";") if p.strip()]
                    if len(poly) < 3 or any(len(p) != 2 for p in poly):
                        raise ValueError
                    if poly[0] != poly[-1]:
                        poly.append(poly[0])
                except ValueError:
                    bad("polygon", "want at least 3 points 'lon lat;lon lat;...'")
            kw["polygon"] = poly
            if not kw["site"]:
                bad("site", "missing (the site id of the station's gateway)")
            key = (kw["site"], kw["node"])
            if key in out:
                bad("node", "site %s node %s is already station %s" % (kw["site"], kw["node"],
                                                                      out[key].id))
            out[key] = Station(**kw)
    if errs:
        raise StationsError("\n".join(errs))
    return out
