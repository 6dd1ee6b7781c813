"""Time per rendered MoFaNeRF view (512 x 512 by default), per headless GL platform.

For each platform (EGL and OSMesa; each in its own subprocess, because PyOpenGL fixes the
platform at import) one synthetic head at FaceScape density (about 26k vertices, 1024^2 texture)
is rendered on the rig and timed three ways, interleaved, best of ``--repeats``:

* ours:      :class:`ViewRenderer` - one offscreen context and one scene per mesh, only the
             camera pose changes between views (render only, colour + depth read back);
* ours+io:   :func:`multiview.run_job` - the same plus PNG encoding, landmark projection with
             visibility and the camera file, i.e. what ``render.py`` does per view;
* reference: the straightforward loop - a new offscreen context and a new scene for every view.

The ratio reported is reference / ours (how many times faster our path renders a view).

Usage:  .venv/bin/python benchmarks/render_views.py [--resolution 512] [--views 24] [--repeats 3]
            [--vertices 26000] [--platforms egl,osmesa]
Writes benchmarks/results/render_views_<device>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facenerf.io import write_text  # noqa: E402
from facenerf.runtime import cpu_model  # noqa: E402


def _make_mesh(folder: Path, vertices: int, texture: int) -> Path:
    """One textured synthetic head written as OBJ + MTL (Kd 0 0 0) + JPG; returns the OBJ."""

    from facenerf.data import synthetic as syn
    from facenerf.data.meshio import ObjMesh, write_mtl, write_obj
    from facenerf.io import write_array_text, write_bytes

    topo = syn.head_topology(vertices)
    person = syn.sample_identity(0, 1)
    uv, face_uv = topo.uv_layout()
    mesh = ObjMesh(syn.expression_mesh(person, 0, topo), topo.faces(), uv, face_uv, "./1_neutral.obj.mtl", "m")
    write_bytes(folder / "1_neutral.jpg", syn.encode_jpeg(syn.texture_image(person, topo, texture)))
    write_mtl(folder / "1_neutral.obj.mtl", "m", "1_neutral.jpg", black_kd=True)
    write_array_text(folder / "1_neutral.landmarks.txt", mesh.vertices[syn.sx.landmark_indices(topo)], fmt="%.18e")
    return write_obj(folder / "1_neutral.obj", mesh)


def _reference_render(mesh, views, resolution: int) -> None:
    """The straightforward loop: a new context and a new scene for every view."""
    import numpy as np
    import pyrender

    from facenerf.preprocess.training import rig

    K = rig.rig_intrinsics(resolution)
    for view in views:
        renderer = pyrender.OffscreenRenderer(resolution, resolution)
        material = pyrender.MetallicRoughnessMaterial(
            baseColorTexture=pyrender.Texture(source=mesh.texture, source_channels="RGB"))
        primitive = pyrender.Primitive(positions=mesh.positions, indices=mesh.triangles,
                                       texcoord_0=mesh.uv, material=material)
        scene = pyrender.Scene(bg_color=np.zeros(4), ambient_light=np.ones(3))
        scene.add(pyrender.Mesh([primitive]))
        scene.add(pyrender.IntrinsicsCamera(K.fx, K.fy, K.cx + 0.5, K.cy + 0.5, znear=0.1, zfar=1000.0),
                  pose=view.c2w())
        renderer.render(scene, flags=pyrender.RenderFlags.FLAT)
        renderer.delete()


def worker(args) -> dict:
    """Run inside a subprocess whose PYOPENGL_PLATFORM is already set; returns timings."""
    from facenerf.preprocess.training import multiview, rig
    from facenerf.preprocess.training.render import RenderJob, ViewRenderer, load_render_mesh

    views = rig.select_views(args.views)
    with tempfile.TemporaryDirectory() as tmp:
        obj = _make_mesh(Path(tmp), args.vertices, args.texture)
        start = time.perf_counter()
        mesh = load_render_mesh(obj)
        load_s = time.perf_counter() - start
        opts = multiview.RenderOptions(resolution=args.resolution, views=tuple(views))
        best = {"ours": float("inf"), "ours_io": float("inf"), "reference": float("inf")}
        for repeat in range(args.repeats):
            # one context per repeat (as one per worker process); created outside the timing,
            # and deleted before the reference runs: pyrender's EGL teardown ends the display
            renderer = ViewRenderer(args.resolution)
            from OpenGL import GL

            gl_renderer = GL.glGetString(GL.GL_RENDERER).decode(errors="replace")
            list(renderer.render(mesh, views[:2]))           # warm-up
            start = time.perf_counter()
            list(renderer.render(mesh, views))
            best["ours"] = min(best["ours"], (time.perf_counter() - start) / len(views))
            job = RenderJob("1", 0, obj, Path(tmp) / f"out{repeat}", mesh_landmarks(obj))
            start = time.perf_counter()
            result = multiview.run_job(renderer, job, opts)
            best["ours_io"] = min(best["ours_io"], (time.perf_counter() - start) / len(views))
            assert result.error is None, result.error
            renderer.close()
            start = time.perf_counter()
            _reference_render(mesh, views, args.resolution)
            best["reference"] = min(best["reference"], (time.perf_counter() - start) / len(views))
    return {"gl_renderer": gl_renderer, "mesh_load_s": load_s, "triangles": int(len(mesh.triangles)),
            "per_view_s": best}


def mesh_landmarks(obj: Path):
    import numpy as np

    return np.loadtxt(obj.with_name("1_neutral.landmarks.txt"))


def run_platform(name: str, args) -> dict:
    env = dict(os.environ, PYOPENGL_PLATFORM=name)
    cmd = [sys.executable, __file__, "--worker", "--resolution", str(args.resolution), "--views", str(args.views),
           "--repeats", str(args.repeats), "--vertices", str(args.vertices), "--texture", str(args.texture)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if "Error" in line or "error" in line]
        return {"error": lines[-1] if lines else f"exit status {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])



def write_results(results: dict, args, out_dir: Path) -> Path:
    device = "cpu"
    payload = {"device": device, "cpu": cpu_model(), "cpu_count": os.cpu_count(),
               "load_average_1min": os.getloadavg()[0], "resolution": args.resolution, "views": args.views,
               "repeats": args.repeats, "vertices_requested": args.vertices, "texture": args.texture,
               "platforms": results}
    write_text(out_dir / f"render_views_{device}.json", json.dumps(payload, indent=1))
    lines = [f"# Rendered view timing on {payload['cpu']} ({payload['cpu_count']} cores, no GPU)", "",
             f"{args.resolution}x{args.resolution} views of a {args.texture}^2-textured synthetic head, "
             f"{args.views} rig views, best of {args.repeats} interleaved runs; "
             f"1-minute load average at the end: {payload['load_average_1min']:.2f} (machine shared).", "",
             "| platform | GL renderer | triangles | ours (render) | ours + PNG/landmarks/json | reference (new context per view) | speed-up |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, res in results.items():
        if "error" in res:
            lines.append(f"| {name} | unavailable: {res['error']} | | | | | |")
            continue
        t = res["per_view_s"]
        lines.append(f"| {name} | {res['gl_renderer']} | {res['triangles']} | {1000 * t['ours']:.1f} ms | "
                     f"{1000 * t['ours_io']:.1f} ms | {1000 * t['reference']:.1f} ms | x{t['reference'] / t['ours']:.2f} |")
    return write_text(out_dir / f"render_views_{device}.md", "\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--views", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vertices", type=int, default=26000)
    parser.add_argument("--texture", type=int, default=1024)
    parser.add_argument("--platforms", default="egl,osmesa")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    results = {name: run_platform(name, args) for name in args.platforms.split(",")}
    path = write_results(results, args, Path(args.out))
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
