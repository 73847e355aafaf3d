/* minisketch draw: the page (plain JavaScript, no framework, no build step).

   A drawing pad keeps your strokes as lists of absolute points in the model's pixel units; it
   spans SPAN times the model's typical sketch size (GET /api/models, "extent"). Before a
   request the strokes are simplified with Ramer-Douglas-Peucker (epsilon RDP_EPSILON units, as
   the sketch-rnn demos did) and written as stroke-3 rows [dx, dy, pen_lifted] whose origin is
   the first point. The answers are drawn in panels, each fitted to its panel and animated row
   by row; your rows in ink, the model's in orange. window.minisketch exposes the pieces to
   tests. */
"use strict";

(function () {
  const RDP_EPSILON = 2;          // model units
  const SPAN = 1.5;               // pad width / the model's typical sketch size
  const INK = "#1f2328";
  const MODEL_INK = "#e8590c";
  const LINE_WIDTH = 2.5;         // CSS pixels
  const ANIMATION_FRAMES = 80;    // frames a sketch takes to draw (about 1.3 s)
  const MAX_SEED = 4294967295;
  const ENDPOINT = {finish: "complete", variations: "variations", morph: "morph",
                    dream: "dream"};
  const GO_LABEL = {finish: "Finish it", variations: "Vary it", morph: "Morph",
                    dream: "Dream"};
  const HELP = {
    finish: "Draw the start of a sketch: the model draws several endings.",
    variations: "Draw a whole sketch: the model encodes it and draws variations of it.",
    morph: "Draw or pick sketch A and sketch B: the model morphs one into the other along " +
           "the path between their latent vectors.",
    dream: "Nothing to draw: the model dreams sketches from random latent vectors.",
  };
  const NEEDS_ENCODER = "needs a conditional model (one with an encoder)";

  const $ = (selector) => document.querySelector(selector);
  const state = {
    models: [], model: null, mode: "finish", busy: false, request: 0, activePad: "main",
    lastRequest: null, lastResponse: null, panels: [], animation: 0,
  };

  // ------------------------------------------------------------------ geometry

  /* Distance from point p to the segment a-b (to the segment, not the line, so a stroke that
     doubles back keeps its turning point). Same formula as minisketch.strokes. */
  function segmentDistance(p, a, b) {
    const abx = b[0] - a[0], aby = b[1] - a[1];
    const denom = abx * abx + aby * aby;
    if (denom === 0) return Math.hypot(p[0] - a[0], p[1] - a[1]);
    let t = ((p[0] - a[0]) * abx + (p[1] - a[1]) * aby) / denom;
    t = Math.min(1, Math.max(0, t));
    return Math.hypot(p[0] - (a[0] + t * abx), p[1] - (a[1] + t * aby));
  }

  /* Ramer-Douglas-Peucker: which points of a polyline [[x, y], ...] to keep. */
  function rdpKeep(points, epsilon) {
    const n = points.length;
    const keep = new Array(n).fill(n <= 2 || epsilon <= 0);
    if (n <= 2 || epsilon <= 0) return keep;
    keep[0] = keep[n - 1] = true;
    const stack = [[0, n - 1]];
    while (stack.length) {
      const [i, j] = stack.pop();
      let best = -1, far = -1;
      for (let k = i + 1; k < j; k++) {
        const d = segmentDistance(points[k], points[i], points[j]);
        if (d > far) { far = d; best = k; }
      }
      if (best >= 0 && far > epsilon) {
        keep[best] = true;
        stack.push([i, best], [best, j]);
      }
    }
    return keep;
  }

  function rdp(points, epsilon) {
    const keep = rdpKeep(points, epsilon);
    return points.filter((_, i) => keep[i]);
  }

  const round2 = (v) => Math.round(v * 100) / 100;

  /* Strokes [{points: [[x, y], ...], exact, open}] -> stroke-3 rows from `origin` (null: the
     first point). `exact` strokes (from the dataset) are not simplified; an `open` stroke has
     no pen lift after its last point. */
  function toStroke3(strokes, origin = null) {
    const rows = [];
    let prev = origin && [round2(origin[0]), round2(origin[1])];
    for (const stroke of strokes) {
      const points = stroke.exact ? stroke.points : rdp(stroke.points, RDP_EPSILON);
      points.forEach((p, i) => {
        const q = [round2(p[0]), round2(p[1])];
        if (prev === null) prev = q;
        const last = i === points.length - 1 && !stroke.open;
        rows.push([round2(q[0] - prev[0]), round2(q[1] - prev[1]), last ? 1 : 0]);
        prev = q;
      });
    }
    return rows;
  }

  /* stroke-3 rows -> absolute points [{x, y, pen}] (the origin is not a point). */
  function toPoints(rows) {
    let x = 0, y = 0;
    return rows.map((r) => { x += r[0]; y += r[1]; return {x, y, pen: r[2]}; });
  }

  function bounds(points) {
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const p of points) {
      x0 = Math.min(x0, p.x); x1 = Math.max(x1, p.x);
      y0 = Math.min(y0, p.y); y1 = Math.max(y1, p.y);
    }
    return points.length ? {x0, y0, x1, y1} : {x0: 0, y0: 0, x1: 0, y1: 0};
  }

  /* The scale and offset that fit points into a w x h box with a margin. */
  function fit(points, w, h, margin) {
    const b = bounds(points);
    const bw = Math.max(b.x1 - b.x0, 1e-6), bh = Math.max(b.y1 - b.y0, 1e-6);
    const scale = Math.min((w - 2 * margin) / bw, (h - 2 * margin) / bh, 1e6);
    return {scale, ox: (w - scale * (b.x0 + b.x1)) / 2, oy: (h - scale * (b.y0 + b.y1)) / 2};
  }

  /* Polylines of a sketch, each with its colour: the first `prefixLen` rows are yours. */
  function polylines(points, prefixLen) {
    const lines = [];
    let line = null;
    points.forEach((p, i) => {
      const colour = i < prefixLen ? INK : MODEL_INK;
      const startsStroke = i === 0 || points[i - 1].pen === 1;
      if (!startsStroke && line && line.colour === colour && line.end === i - 1) {
        line.points.push(p);
      } else {
        line = {colour, points: startsStroke ? [p] : [points[i - 1], p]};
        lines.push(line);
      }
      line.end = i;
    });
    return lines;
  }

  // ------------------------------------------------------------------ drawing on canvases

  function setupCanvas(canvas) {
    const r = canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.max(1, Math.round(r.width * dpr));
    canvas.height = Math.max(1, Math.round(r.height * dpr));
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    return {ctx, w: r.width, h: r.height};
  }

  function strokeSegment(ctx, a, b, colour, width) {
    ctx.strokeStyle = colour;
    ctx.fillStyle = colour;
    ctx.lineWidth = width;
    if (a === null) {                      // a point on its own: a dot
      ctx.beginPath();
      ctx.arc(b[0], b[1], width / 2, 0, 2 * Math.PI);
      ctx.fill();
      return;
    }
    ctx.beginPath();
    ctx.moveTo(a[0], a[1]);
    ctx.lineTo(b[0], b[1]);
    ctx.stroke();
  }

  /* Draw the first `upto` rows of a fitted sketch on a cleared canvas, each polyline as one
     path; a point that is a whole stroke is a dot. */
  function drawSketch(ctx, points, tf, prefixLen, upto, width) {
    ctx.clearRect(0, 0, ctx.canvas.width, ctx.canvas.height);
    const at = (p) => [tf.ox + tf.scale * p.x, tf.oy + tf.scale * p.y];
    for (const line of polylines(points.slice(0, upto), prefixLen)) {
      const pts = line.points.map(at);
      if (pts.length === 1) {
        strokeSegment(ctx, null, pts[0], line.colour, width);
        continue;
      }
      ctx.strokeStyle = line.colour;
      ctx.lineWidth = width;
      ctx.beginPath();
      ctx.moveTo(pts[0][0], pts[0][1]);
      for (const p of pts.slice(1)) ctx.lineTo(p[0], p[1]);
      ctx.stroke();
    }
  }

  // ------------------------------------------------------------------ pads

  class Pad {
    constructor(name, canvas) {
      this.name = name;
      this.canvas = canvas;
      this.strokes = [];
      this.origin = null;             // where a dataset sketch's offsets start
      this.current = null;
      this.unitsPerPx = 1;
      this.span = 100;
      canvas.addEventListener("pointerdown", (e) => this.down(e));
      canvas.addEventListener("pointermove", (e) => this.move(e));
      for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
        canvas.addEventListener(type, (e) => this.up(e));
      }
    }

    visible() { return this.canvas.getBoundingClientRect().width > 0; }

    resize() {
      if (!this.visible()) return;
      const {ctx, w} = setupCanvas(this.canvas);
      this.ctx = ctx;
      this.size = w;
      this.unitsPerPx = this.span / w;
      this.redraw();
    }

    setSpan(units) { this.span = units; this.resize(); }

    point(e) {
      const r = this.canvas.getBoundingClientRect();
      return [(e.clientX - r.left) * this.unitsPerPx, (e.clientY - r.top) * this.unitsPerPx];
    }

    down(e) {
      if (e.pointerType === "mouse" && e.button !== 0) return;
      if (this.current !== null) return;     // a second finger while drawing
      e.preventDefault();
      try { this.canvas.setPointerCapture(e.pointerId); } catch (err) { /* not a live pointer */ }
      this.current = {points: [this.point(e)], pointerId: e.pointerId};
      this.strokes.push(this.current);
      state.activePad = this.name;
      this.redraw();
      onDrawingChanged();
    }

    move(e) {
      if (this.current === null || e.pointerId !== this.current.pointerId) return;
      e.preventDefault();
      const events = (e.getCoalescedEvents && e.getCoalescedEvents().length) ?
        e.getCoalescedEvents() : [e];
      const pts = this.current.points;
      const before = pts.length;
      for (const ev of events) {
        const p = this.point(ev), q = pts[pts.length - 1];
        if (Math.hypot(p[0] - q[0], p[1] - q[1]) >= 0.5 * this.unitsPerPx) pts.push(p);
      }
      if (pts.length > before) this.redraw();
    }

    up(e) {
      if (this.current === null || e.pointerId !== this.current.pointerId) return;
      this.current = null;
      onDrawingChanged();
    }

    /* Each stroke as one path (segments drawn one by one would darken where they meet). */
    redraw() {
      if (!this.ctx) return;
      const ctx = this.ctx, s = 1 / this.unitsPerPx;
      ctx.clearRect(0, 0, this.size, this.size);
      for (const stroke of this.strokes) {
        const pts = stroke.points;
        if (pts.length === 1) {
          strokeSegment(ctx, null, [pts[0][0] * s, pts[0][1] * s], INK, LINE_WIDTH);
          continue;
        }
        ctx.strokeStyle = INK;
        ctx.lineWidth = LINE_WIDTH;
        ctx.beginPath();
        ctx.moveTo(pts[0][0] * s, pts[0][1] * s);
        for (const p of pts.slice(1)) ctx.lineTo(p[0] * s, p[1] * s);
        ctx.stroke();
      }
      this.canvas.parentElement.classList.toggle("empty", this.strokes.length === 0);
    }

    isEmpty() { return this.strokes.length === 0; }
    undo() {
      this.current = null;
      this.strokes.pop();
      if (this.isEmpty()) this.origin = null;
      this.redraw();
    }

    clear() { this.current = null; this.strokes = []; this.origin = null; this.redraw(); }
    stroke3() { return toStroke3(this.strokes, this.origin); }

    /* Show a dataset sketch (stroke-3 rows), centred; `open`: its last stroke goes on. */
    setSketch(rows, open) {
      const points = toPoints(rows), b = bounds(points);
      // a whole-unit shift keeps the sketch's own offsets when it is sent back
      const dx = Math.round(this.span / 2 - (b.x0 + b.x1) / 2);
      const dy = Math.round(this.span / 2 - (b.y0 + b.y1) / 2);
      this.strokes = [];
      this.origin = [dx, dy];
      let stroke = null;
      points.forEach((p, i) => {
        if (stroke === null) { stroke = {points: [], exact: true}; this.strokes.push(stroke); }
        stroke.points.push([p.x + dx, p.y + dy]);
        if (p.pen === 1) stroke = null;
        else if (i === points.length - 1) stroke.open = open;
      });
      this.redraw();
    }
  }

  const pads = {};

  // ------------------------------------------------------------------ result panels

  function panelCaption(mode, i, n) {
    if (mode === "morph") {
      if (i === 0) return "A";
      if (i === n - 1) return "B";
      return `t = ${(i / (n - 1)).toFixed(2)}`;
    }
    return `${{finish: "ending", variations: "variation", dream: "dream"}[mode]} ${i + 1}`;
  }

  function showResults(sketches, mode, prefixLen) {
    const results = $("#results");
    results.replaceChildren();
    state.panels = sketches.map((rows, i) => {
      const figure = document.createElement("figure");
      figure.className = "panel";
      const canvas = document.createElement("canvas");
      const caption = document.createElement("figcaption");
      const title = document.createElement("span");
      title.textContent = panelCaption(mode, i, sketches.length) +
        (rows.length ? "" : " (empty)");
      const name = `minisketch-${mode}-${i + 1}`;
      const downloads = document.createElement("div");
      downloads.className = "downloads";
      downloads.append(button("SVG", () => downloadSVG(rows, prefixLen, name + ".svg")),
                       button("PNG", () => downloadPNG(rows, prefixLen, name + ".png")));
      caption.append(title, downloads);
      figure.append(canvas, caption);
      results.append(figure);
      return {rows, points: toPoints(rows), prefixLen: Math.min(prefixLen, rows.length), canvas};
    });
    for (const p of state.panels) {
      const {ctx, w, h} = setupCanvas(p.canvas);
      p.ctx = ctx;
      p.tf = fit(p.points, w, h, 0.08 * Math.min(w, h));
      drawSketch(ctx, p.points, p.tf, p.prefixLen, p.prefixLen, LINE_WIDTH);
      p.shown = p.prefixLen;
    }
    results.dataset.state = "drawing";
    animate();
  }

  function animate() {
    const id = ++state.animation;
    const reduce = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    const tick = () => {
      if (id !== state.animation) return;   // a newer answer took over
      let running = false;
      for (const p of state.panels) {
        const n = p.points.length;
        if (p.shown >= n) continue;
        const step = reduce ? n : Math.max(1, Math.ceil((n - p.prefixLen) / ANIMATION_FRAMES));
        const to = Math.min(n, p.shown + step);
        drawSketch(p.ctx, p.points, p.tf, p.prefixLen, to, LINE_WIDTH);
        p.shown = to;
        running = running || to < n;
      }
      if (running) requestAnimationFrame(tick);
      else $("#results").dataset.state = "done";
    };
    requestAnimationFrame(tick);
  }

  function redrawPanels() {
    for (const p of state.panels) {
      const {ctx, w, h} = setupCanvas(p.canvas);
      p.ctx = ctx;
      p.tf = fit(p.points, w, h, 0.08 * Math.min(w, h));
      drawSketch(ctx, p.points, p.tf, p.prefixLen, p.shown, LINE_WIDTH);
    }
  }

  // ------------------------------------------------------------------ downloads

  function sketchSVG(rows, prefixLen, size = 256) {
    const points = toPoints(rows);
    const tf = fit(points, size, size, 0.08 * size);
    const f = (v) => +v.toFixed(2);
    const paths = polylines(points, prefixLen).map((line) => {
      const pts = line.points.map((p) => [f(tf.ox + tf.scale * p.x), f(tf.oy + tf.scale * p.y)]);
      const d = pts.length === 1 ? `M${pts[0][0]} ${pts[0][1]}h0` :
        "M" + pts.map((p) => `${p[0]} ${p[1]}`).join("L");
      return `<path d="${d}" stroke="${line.colour}"/>`;
    });
    return `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}" ` +
      `viewBox="0 0 ${size} ${size}"><rect width="100%" height="100%" fill="#fff"/>` +
      `<g fill="none" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">` +
      paths.join("") + "</g></svg>\n";
  }

  function save(blob, filename) {
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = filename;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  function downloadSVG(rows, prefixLen, filename) {
    save(new Blob([sketchSVG(rows, prefixLen)], {type: "image/svg+xml"}), filename);
  }

  function downloadPNG(rows, prefixLen, filename, size = 512) {
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = size;
    const ctx = canvas.getContext("2d");
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    const points = toPoints(rows);
    drawSketch(ctx, points, fit(points, size, size, 0.08 * size), prefixLen, points.length, 4);
    ctx.globalCompositeOperation = "destination-over";     // a white background behind
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, size, size);
    canvas.toBlob((blob) => save(blob, filename), "image/png");
  }

  // ------------------------------------------------------------------ talking to the server

  async function api(path, body) {
    const options = body === undefined ? {} : {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
    let response;
    try {
      response = await fetch(path, options);
    } catch (err) {
      throw new Error("cannot reach the server: is python -m minisketch.draw still running?");
    }
    let data = null;
    try { data = await response.json(); } catch (err) { /* not JSON */ }
    if (!response.ok) {
      throw new Error(data && data.error ? data.error : `the server answered ${response.status}`);
    }
    return data;
  }

  function setStatus(text, kind = "") {
    const status = $("#status");
    status.textContent = text;
    status.dataset.kind = kind;
  }

  function readNumber(selector, lo, hi, fallback) {
    const v = Number($(selector).value);
    return Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : fallback;
  }

  async function go() {
    if (state.busy || !state.model) return;
    const mode = state.mode;
    const body = {
      model: state.model.name,
      n: Math.round(readNumber("#count", mode === "morph" ? 2 : 1, 16, 4)),
      temperature: readNumber("#temperature", 0.05, 2, 0.5),
      seed: Math.round(readNumber("#seed", 0, MAX_SEED, 0)),
    };
    let prefixLen = 0;
    if (mode === "finish" || mode === "variations") {
      if (pads.main.isEmpty()) { setStatus("Draw something first.", "warn"); return; }
      body.strokes = pads.main.stroke3();
      if (mode === "finish") prefixLen = body.strokes.length;
    } else if (mode === "morph") {
      if (pads.a.isEmpty() || pads.b.isEmpty()) {
        setStatus("Draw (or pick an example for) both sketch A and sketch B.", "warn");
        return;
      }
      body.sketches = [pads.a.stroke3(), pads.b.stroke3()];
    }
    const id = ++state.request;
    setBusy(true);
    setStatus("Asking the model…");
    const t0 = performance.now();
    try {
      const data = await api(`/api/${ENDPOINT[mode]}`, body);
      if (id !== state.request) return;
      state.lastRequest = body;
      state.lastResponse = data;
      showResults(data.sketches, mode, prefixLen);
      const seconds = ((performance.now() - t0) / 1000).toFixed(2);
      const what = {finish: "endings", variations: "variations", morph: "steps",
                    dream: "dreams"}[mode];
      if (mode === "finish" && data.sketches.every((s) => s.length <= prefixLen)) {
        setStatus(`Your drawing has ${prefixLen} points after simplification; this model ` +
                  `draws at most ${state.model.max_seq_len}, so it has nothing to add.`, "warn");
      } else {
        setStatus(`${data.sketches.length} ${what} in ${seconds} s (seed ${body.seed}).`);
      }
    } catch (err) {
      if (id !== state.request) return;
      $("#results").dataset.state = "error";
      setStatus(err.message, "error");
    } finally {
      if (id === state.request) setBusy(false);
    }
  }

  async function loadExample(padName) {
    if (!state.model) return;
    const seed = Math.floor(Math.random() * MAX_SEED);
    try {
      const data = await api(`/api/examples?model=${encodeURIComponent(state.model.name)}` +
                             `&n=1&seed=${seed}`);
      let rows = data.sketches[0];
      const half = padName === "main" && state.mode === "finish";
      if (half) rows = rows.slice(0, Math.ceil(rows.length / 2));
      pads[padName].setSketch(rows, half);
      state.activePad = padName;
      onDrawingChanged();
      setStatus(`Test-set sketch ${data.indices[0]}${half ? ", first half" : ""}.`);
    } catch (err) {
      setStatus(err.message, "error");
    }
  }

  // ------------------------------------------------------------------ the controls

  function button(label, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "small";
    b.textContent = label;
    b.addEventListener("click", onClick);
    return b;
  }

  function setBusy(busy) {
    state.busy = busy;
    $("#go").disabled = busy;
    document.body.dataset.state = busy ? "busy" : "ready";
  }

  function onDrawingChanged() {
    for (const pad of Object.values(pads)) {
      pad.canvas.parentElement.classList.toggle("empty", pad.isEmpty());
    }
  }

  function setMode(mode) {
    if (state.model && !state.model.modes.includes(mode)) mode = "finish";
    state.mode = mode;
    document.body.dataset.mode = mode;
    for (const b of document.querySelectorAll(".mode")) {
      b.setAttribute("aria-pressed", String(b.dataset.mode === mode));
    }
    $("#go").textContent = GO_LABEL[mode];
    $("#help").textContent = HELP[mode];
    $("#count").min = mode === "morph" ? 2 : 1;
    if (mode === "morph" && Number($("#count").value) < 2) $("#count").value = 2;
    for (const pad of Object.values(pads)) pad.resize();   // a pad shown for the first time
    state.activePad = mode === "morph" ? "a" : "main";
  }

  function setModel(name) {
    const model = state.models.find((m) => m.name === name) || state.models[0];
    state.model = model;
    state.request++;                  // an answer still on its way is for the old model
    setBusy(false);
    const cells = model.kind === "conditional" ?
      `${model.encoder_cell} encoder, ${model.cell} decoder` : `${model.cell} decoder`;
    $("#model-info").textContent =
      `${model.kind}, ${cells}, M = ${model.num_mixture}, up to ${model.max_seq_len} points`;
    for (const b of document.querySelectorAll(".mode")) {
      const ok = model.modes.includes(b.dataset.mode);
      b.disabled = !ok;
      b.title = ok ? "" : `${b.dataset.mode} ${NEEDS_ENCODER}; ${model.name} is decoder-only`;
    }
    for (const b of document.querySelectorAll(".example")) b.hidden = !model.examples;
    for (const pad of Object.values(pads)) { pad.clear(); pad.setSpan(SPAN * model.extent); }
    emptyResults();
    setMode(state.mode);
    onDrawingChanged();
  }

  function emptyResults() {
    state.panels = [];
    state.animation++;
    const placeholder = document.createElement("p");
    placeholder.className = "placeholder";
    placeholder.textContent = "The model's sketches appear here.";
    $("#results").replaceChildren(placeholder);
    $("#results").dataset.state = "empty";
  }

  function clearAll() {
    for (const pad of Object.values(pads)) pad.clear();
    emptyResults();
    state.request++;
    setBusy(false);
    setStatus("");
    onDrawingChanged();
  }

  async function start() {
    pads.main = new Pad("main", $("#pad-main"));
    pads.a = new Pad("a", $("#pad-a"));
    pads.b = new Pad("b", $("#pad-b"));
    for (const b of document.querySelectorAll(".mode")) {
      b.addEventListener("click", () => setMode(b.dataset.mode));
    }
    for (const b of document.querySelectorAll(".example")) {
      b.addEventListener("click", () => loadExample(b.dataset.pad));
    }
    $("#go").addEventListener("click", go);
    $("#undo").addEventListener("click", () => {
      pads[state.activePad].undo();
      onDrawingChanged();
    });
    $("#clear").addEventListener("click", clearAll);
    $("#new-seed").addEventListener("click", () => {
      $("#seed").value = Math.floor(Math.random() * MAX_SEED);
    });
    const temperature = $("#temperature");
    const showTemperature = () => {
      $("#temperature-value").textContent = Number(temperature.value).toFixed(2);
    };
    temperature.addEventListener("input", showTemperature);
    showTemperature();
    $("#model").addEventListener("change", (e) => setModel(e.target.value));
    document.addEventListener("keydown", (e) => {
      if ((e.ctrlKey || e.metaKey) && e.key === "z") {
        e.preventDefault();
        pads[state.activePad].undo();
        onDrawingChanged();
      } else if ((e.ctrlKey || e.metaKey) && e.key === "Enter") {
        e.preventDefault();
        go();
      }
    });
    window.addEventListener("resize", () => {
      for (const pad of Object.values(pads)) pad.resize();
      redrawPanels();
    });
    setMode("finish");
    try {
      state.models = await api("/api/models");
    } catch (err) {
      setStatus(err.message, "error");
      document.body.dataset.state = "error";
      return;
    }
    const select = $("#model");
    for (const m of state.models) {
      const option = document.createElement("option");
      option.value = m.name;
      option.textContent = m.name;
      select.append(option);
    }
    setModel(state.models[0].name);
    document.body.dataset.state = "ready";
  }

  window.minisketch = {state, pads, rdp, rdpKeep, toStroke3, toPoints, polylines, sketchSVG,
                       RDP_EPSILON};
  start();
})();
