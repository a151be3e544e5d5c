// StoreSense /setup: draw zones and click calibration marks on a camera snapshot.
// All geometry is kept in snapshot pixels; the server converts to the config's units on save.
"use strict";

const KIND_COLORS = {
  queue: "#2f6fde", service: "#7c5cc4", dwell: "#f08c00", entrance: "#14a38b", staff_only: "#d64545",
};
const HIT_PX = 12; // on screen

const state = {
  config: null,
  camera: null,
  image: null,
  size: [1280, 720],
  zones: [],       // {id, original_id, kind, label, lane, service_zone, units, polygon_px}
  staticObjects: [], // static scenery the pipeline found: {xyxy_px}; mask them with an ignore polygon
  flow: null,      // where tracks were born / ended in the last hour: {grid, births, ends} (counts per cell)
  overlaps: [],    // zone pairs that double count (server check, zones/overlaps.py)
  checkTimer: null,
  checkSeq: 0,
  calib: [],       // {px: [x, y], m: [X|null, Y|null], err: number|null}
  hadCalibration: false,
  grid: [],
  mode: "select",
  drawing: [],
  selected: -1,
  drag: null,
  previewTimer: null,
  previewSeq: 0,
};

window.setupState = state; // for tests and the browser console

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d");

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const resp = await fetch(path, Object.assign({ credentials: "same-origin" }, opts));
  if (resp.status === 401) { window.location.href = "/setup"; throw new Error("not logged in"); }
  const data = await resp.json();
  return { status: resp.status, data };
}

function message(html, cls) {
  const box = $("messages");
  box.innerHTML = "";
  if (!html) return;
  const div = document.createElement("div");
  div.className = cls || "";
  div.textContent = html;
  box.appendChild(div);
}

// ---------------------------------------------------------------------------------------------
// loading

async function loadConfig() {
  const { data } = await api("/setup/api/config");
  state.config = data;
  $("store").textContent = `${data.store_name} · ${data.config_file.split("/").pop()}`;
  $("store").title = data.config_file;
  const sel = $("camera");
  sel.innerHTML = "";
  for (const cam of data.cameras) {
    const opt = document.createElement("option");
    opt.value = cam.id; opt.textContent = cam.id;
    sel.appendChild(opt);
  }
  if (data.cameras.length) await selectCamera(data.cameras[0].id);
}

function loadSnapshot(cameraId) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("snapshot failed"));
    img.src = `/setup/api/snapshot/${encodeURIComponent(cameraId)}.jpg?t=${Date.now()}`;
  });
}

async function selectCamera(cameraId) {
  const cam = state.config.cameras.find((c) => c.id === cameraId);
  state.camera = cam;
  state.drawing = []; state.selected = -1; state.grid = [];
  try {
    state.image = await loadSnapshot(cameraId);
    state.size = [state.image.naturalWidth, state.image.naturalHeight];
    $("hint").textContent = `${cameraId}: ${state.size[0]}×${state.size[1]} px`;
  } catch (err) {
    state.image = null;
    $("hint").textContent = `${cameraId}: 没有画面 no snapshot (camera offline and no reference frame)`;
  }
  canvas.width = state.size[0]; canvas.height = state.size[1];
  const [w, h] = state.size;
  // calibration marks, scaled to this snapshot if they were clicked on another frame size
  state.calib = [];
  state.hadCalibration = !!(cam.calibration && cam.calibration.image_points_px);
  let sx = 1, sy = 1;
  if (state.hadCalibration) {
    const ref = cam.calibration.reference_size_px;
    if (ref) { sx = w / ref[0]; sy = h / ref[1]; }
    cam.calibration.image_points_px.forEach((p, i) => {
      state.calib.push({ px: [p[0] * sx, p[1] * sy], m: cam.calibration.floor_points_m[i].slice(), err: null });
    });
  }
  state.zones = cam.zones.map((z) => ({
    id: z.id, original_id: z.id, kind: z.kind, label: z.label || "", lane: z.lane || "",
    service_zone: z.service_zone || "", units: z.units,
    polygon_px: z.units === "m" ? null : z.polygon.map((p) => [p[0] * w, p[1] * h]),
    polygon_m: z.units === "m" ? z.polygon : null,
  }));
  state.staticObjects = cam.static_objects || [];
  state.flow = cam.track_flow || null;
  renderFlowLegend();
  renderCalibTable(); renderZoneList(); schedulePreview(0); draw();
}

// ---------------------------------------------------------------------------------------------
// calibration preview

function completePairs() {
  return state.calib.filter((c) => Number.isFinite(c.m[0]) && Number.isFinite(c.m[1]));
}

function schedulePreview(delay) {
  clearTimeout(state.previewTimer);
  state.previewTimer = setTimeout(preview, delay === undefined ? 250 : delay);
}

async function preview() {
  const pairs = completePairs();
  const status = $("calib-status");
  if (pairs.length < 4) {
    state.grid = [];
    status.className = "muted";
    status.textContent = `${pairs.length}/4 个完整点 · ${pairs.length} of at least 4 complete marks (click the image, then type floor X/Y in metres)`;
    state.calib.forEach((c) => { c.err = null; });
    renderCalibErrors(); draw();
    return;
  }
  const seq = ++state.previewSeq;
  const floorPolys = {};
  state.zones.forEach((z) => { if (z.units === "m" && z.polygon_m && !z.polygon_px) floorPolys[z.id] = z.polygon_m; });
  const { data } = await api("/setup/api/preview", {
    image_points_px: pairs.map((c) => c.px), floor_points_m: pairs.map((c) => c.m),
    frame_size_px: state.size, floor_polygons: floorPolys,
  });
  if (seq !== state.previewSeq) return;
  if (!data.ok) {
    state.grid = [];
    status.className = "bad";
    status.textContent = data.error;
    draw();
    return;
  }
  state.grid = data.grid;
  pairs.forEach((c, i) => { c.err = data.errors_m[i]; });
  for (const [zid, poly] of Object.entries(data.polygons_px || {})) {
    const z = state.zones.find((q) => q.id === zid);
    if (z && poly) z.polygon_px = poly;
  }
  scheduleCheck(0);
  status.className = data.within_tolerance ? "good" : "bad";
  status.textContent = `RMS 误差 error ${data.rms_error_m.toFixed(3)} m · max ${data.max_error_m.toFixed(3)} m (#${data.worst_pair})` +
    (data.within_tolerance ? " ✓" : " — 请重新测量该点 re-measure that mark");
  renderCalibErrors(); draw();
}

// ---------------------------------------------------------------------------------------------
// drawing

function toImage(evt) {
  const r = canvas.getBoundingClientRect();
  return [(evt.clientX - r.left) * canvas.width / r.width, (evt.clientY - r.top) * canvas.height / r.height];
}

function screenScale() {
  const r = canvas.getBoundingClientRect();
  return canvas.width / Math.max(r.width, 1);
}

function draw() {
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (state.image) ctx.drawImage(state.image, 0, 0);
  else { ctx.fillStyle = "#333"; ctx.fillRect(0, 0, canvas.width, canvas.height); }
  const s = screenScale();
  if ($("show-grid").checked) {
    for (const line of state.grid) {
      ctx.beginPath();
      line.points.forEach((p, i) => (i ? ctx.lineTo(p[0], p[1]) : ctx.moveTo(p[0], p[1])));
      ctx.strokeStyle = line.axis === "x" ? "rgba(255,80,80,.95)" : line.axis === "y" ? "rgba(80,230,120,.95)" : "rgba(255,255,255,.55)";
      ctx.lineWidth = (line.axis ? 2.5 : 1.2) * s;
      ctx.stroke();
    }
  }
  state.zones.forEach((z, zi) => {
    if (!z.polygon_px || z.polygon_px.length < 3) return;
    const color = KIND_COLORS[z.kind] || "#fff";
    ctx.beginPath();
    z.polygon_px.forEach((p, i) => (i ? ctx.lineTo(p[0], p[1]) : ctx.moveTo(p[0], p[1])));
    ctx.closePath();
    ctx.fillStyle = color + (zi === state.selected ? "55" : "33");
    ctx.fill();
    ctx.strokeStyle = color; ctx.lineWidth = (zi === state.selected ? 3.5 : 2) * s; ctx.stroke();
    if (zi === state.selected || state.mode === "select") {
      for (const p of z.polygon_px) {
        ctx.beginPath(); ctx.arc(p[0], p[1], 5 * s, 0, Math.PI * 2);
        ctx.fillStyle = "#fff"; ctx.fill(); ctx.strokeStyle = color; ctx.lineWidth = 2 * s; ctx.stroke();
      }
    }
    const cx = z.polygon_px.reduce((a, p) => a + p[0], 0) / z.polygon_px.length;
    const cy = z.polygon_px.reduce((a, p) => a + p[1], 0) / z.polygon_px.length;
    const text = z.label ? `${z.label} (${z.id})` : z.id;
    ctx.font = `${Math.round(14 * s)}px "DejaVu Sans", "WenQuanYi Zen Hei", sans-serif`;
    const tw = ctx.measureText(text).width;
    ctx.fillStyle = "rgba(0,0,0,.7)";
    ctx.fillRect(cx - tw / 2 - 4 * s, cy - 12 * s, tw + 8 * s, 20 * s);
    ctx.fillStyle = "#fff"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
    ctx.fillText(text, cx, cy - 2 * s);
  });
  if ($("show-flow").checked) drawFlow(s);
  for (const o of state.staticObjects) {  // posters, mannequins, signs held as "people" (edge/scenery.py)
    const [x1, y1, x2, y2] = o.xyxy_px;
    ctx.setLineDash([6 * s, 4 * s]); ctx.strokeStyle = "#ff9f1c"; ctx.lineWidth = 2.5 * s;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1); ctx.setLineDash([]);
    ctx.font = `${Math.round(12 * s)}px "DejaVu Sans", sans-serif`; ctx.textAlign = "left"; ctx.textBaseline = "bottom";
    ctx.fillStyle = "#ff9f1c"; ctx.fillText("static object", x1, y1 - 2 * s);
  }
  if (state.drawing.length) {
    ctx.beginPath();
    state.drawing.forEach((p, i) => (i ? ctx.lineTo(p[0], p[1]) : ctx.moveTo(p[0], p[1])));
    ctx.strokeStyle = "#fff"; ctx.setLineDash([8 * s, 6 * s]); ctx.lineWidth = 2 * s; ctx.stroke(); ctx.setLineDash([]);
    for (const p of state.drawing) {
      ctx.beginPath(); ctx.arc(p[0], p[1], 5 * s, 0, Math.PI * 2); ctx.fillStyle = "#fff"; ctx.fill();
    }
  }
  state.calib.forEach((c, i) => {
    const [x, y] = c.px;
    ctx.beginPath(); ctx.arc(x, y, 9 * s, 0, Math.PI * 2);
    ctx.fillStyle = c.err !== null && c.err > 0.25 ? "#d64545" : "#ffd43b"; ctx.fill();
    ctx.strokeStyle = "#000"; ctx.lineWidth = 1.5 * s; ctx.stroke();
    ctx.fillStyle = "#000"; ctx.font = `bold ${Math.round(11 * s)}px "DejaVu Sans", sans-serif`;
    ctx.textAlign = "center"; ctx.textBaseline = "middle"; ctx.fillText(String(i + 1), x, y);
  });
}

// where people appear (filled green) and leave (red rings) in the last hour; a cell's mark grows
// with the square root of its count so one busy door does not hide a quieter one
function drawFlow(s) {
  const f = state.flow;
  if (!f || !f.grid) return;
  const [cols, rows] = f.grid;
  const cw = canvas.width / cols, ch = canvas.height / rows;
  const peak = Math.max(1, ...f.births.map((c) => c[2]), ...f.ends.map((c) => c[2]));
  const radius = (n) => Math.max(2.5 * s, Math.sqrt(n / peak) * Math.min(cw, ch) * 0.6);
  for (const [c, r, n] of f.births) {
    ctx.beginPath(); ctx.arc((c + 0.42) * cw, (r + 0.5) * ch, radius(n), 0, Math.PI * 2);
    ctx.fillStyle = "rgba(61,220,132,.45)"; ctx.fill();
  }
  for (const [c, r, n] of f.ends) {
    ctx.beginPath(); ctx.arc((c + 0.58) * cw, (r + 0.5) * ch, radius(n), 0, Math.PI * 2);
    ctx.strokeStyle = "rgba(255,77,109,.8)"; ctx.lineWidth = 2 * s; ctx.stroke();
  }
}

function renderFlowLegend() {
  const box = $("flow-legend");
  const f = state.flow;
  if (!f || !(f.births_total || f.ends_total)) {
    box.textContent = "最近一小时没有轨迹 No tracks in the last hour yet: the overlay fills while `storesense run` analyses this camera";
    return;
  }
  const since = f.from_s ? new Date(f.from_s * 1000).toISOString().slice(11, 16) + " UTC" : "";
  box.textContent = `● 出现 appear ${f.births_total} · ○ 离开 leave ${f.ends_total}` + (since ? ` · since ${since}` : "") +
    " — 入口区域应覆盖人们出现的边缘 the entrance zone belongs where people appear";
}

function scheduleCheck(delay) {
  clearTimeout(state.checkTimer);
  state.checkTimer = setTimeout(checkOverlaps, delay === undefined ? 300 : delay);
}

async function checkOverlaps() {
  const seq = ++state.checkSeq;
  const zones = state.zones.filter((z) => z.polygon_px && z.polygon_px.length >= 3)
    .map((z) => ({ id: z.id, kind: z.kind, lane: z.lane, polygon_px: z.polygon_px }));
  const { status, data } = await api("/setup/api/check", { zones });
  if (seq !== state.checkSeq || status !== 200) return;
  state.overlaps = data.overlaps;
  const box = $("overlaps");
  box.innerHTML = "";
  for (const o of data.overlaps) {
    const div = document.createElement("div");
    div.className = "overlap-warning";
    div.textContent = `⚠ 区域重叠 ${o.message}`;
    box.appendChild(div);
  }
}

// ---------------------------------------------------------------------------------------------
// side panel

function renderZoneList() {
  const ul = $("zone-list");
  ul.innerHTML = "";
  scheduleCheck();
  state.zones.forEach((z, zi) => {
    const li = document.createElement("li");
    li.dataset.index = String(zi);
    if (zi === state.selected) li.className = "selected";
    const chip = document.createElement("span");
    chip.className = "chip"; chip.style.background = KIND_COLORS[z.kind] || "#999";
    const id = input("text", z.id, "zone-id", (v) => { z.id = v.trim(); draw(); scheduleCheck(); });
    const kind = document.createElement("select");
    kind.className = "zone-kind";
    for (const k of state.config.zone_kinds) {
      const o = document.createElement("option"); o.value = k; o.textContent = k; kind.appendChild(o);
    }
    kind.value = z.kind;
    kind.addEventListener("change", () => { z.kind = kind.value; chip.style.background = KIND_COLORS[z.kind]; draw(); scheduleCheck(); });
    const del = document.createElement("button");
    del.type = "button"; del.className = "del zone-delete"; del.textContent = "✕"; del.title = "删除 delete";
    del.addEventListener("click", () => { state.zones.splice(zi, 1); state.selected = -1; renderZoneList(); draw(); });
    const wide = document.createElement("div");
    wide.className = "wide";
    wide.appendChild(input("text", z.label, "zone-label", (v) => { z.label = v; draw(); }, "名称 label"));
    wide.appendChild(input("text", z.lane, "zone-lane", (v) => { z.lane = v.trim(); scheduleCheck(); }, "通道 lane"));
    wide.appendChild(input("text", z.service_zone, "zone-service", (v) => { z.service_zone = v.trim(); }, "收银区 service zone"));
    const units = document.createElement("span");
    units.className = "units"; units.textContent = z.units === "m" ? "m" : "norm";
    li.append(chip, id, kind, del, document.createElement("span"), wide, units);
    li.addEventListener("click", (e) => { if (e.target === li) { state.selected = zi; renderZoneList(); draw(); } });
    ul.appendChild(li);
  });
}

function input(type, value, cls, onChange, placeholder) {
  const el = document.createElement("input");
  el.type = type; el.value = value === null || value === undefined ? "" : value; el.className = cls;
  if (placeholder) el.placeholder = placeholder;
  el.addEventListener("input", () => onChange(el.value));
  return el;
}

function renderCalibTable() {
  const tbody = $("calib-table").querySelector("tbody");
  tbody.innerHTML = "";
  state.calib.forEach((c, i) => {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td>${i + 1}</td><td>${c.px[0].toFixed(0)}</td><td>${c.px[1].toFixed(0)}</td>`;
    for (const k of [0, 1]) {
      const td = document.createElement("td");
      const el = document.createElement("input");
      el.type = "number"; el.step = "0.01"; el.className = k ? "floor-y" : "floor-x";
      el.value = Number.isFinite(c.m[k]) ? String(c.m[k]) : "";
      el.addEventListener("input", () => {
        const v = parseFloat(el.value);
        c.m[k] = Number.isFinite(v) ? v : null;
        schedulePreview();
      });
      td.appendChild(el); tr.appendChild(td);
    }
    const err = document.createElement("td"); err.className = "err"; tr.appendChild(err);
    const td = document.createElement("td");
    const del = document.createElement("button");
    del.type = "button"; del.className = "del calib-delete"; del.textContent = "✕";
    del.addEventListener("click", () => { state.calib.splice(i, 1); renderCalibTable(); schedulePreview(0); draw(); });
    td.appendChild(del); tr.appendChild(td);
    tbody.appendChild(tr);
  });
  renderCalibErrors();
}

function renderCalibErrors() {
  const rows = $("calib-table").querySelectorAll("tbody tr");
  state.calib.forEach((c, i) => {
    const td = rows[i] && rows[i].querySelector("td.err");
    if (!td) return;
    td.textContent = c.err === null ? "" : c.err.toFixed(3);
    td.classList.toggle("bad", c.err !== null && c.err > 0.25);
  });
}

// ---------------------------------------------------------------------------------------------
// modes and pointer

function setMode(mode) {
  if (state.mode === "zone" && mode !== "zone") state.drawing = [];
  state.mode = mode;
  for (const b of document.querySelectorAll(".modes button")) b.classList.toggle("active", b.dataset.mode === mode);
  $("drawing-tools").hidden = mode !== "zone";
  const hints = {
    select: "拖动角点或标定点 Drag corners or marks; click a zone to select it",
    zone: "点击添加角点，点击第一个点或“完成”结束 Click corners; click the first one or Finish to close",
    calib: "点击地面标记，然后输入其地面坐标 Click a floor mark, then type its floor X/Y (m)",
  };
  $("hint").textContent = hints[mode];
  updateDrawingCount(); draw();
}

function updateDrawingCount() {
  $("drawing-count").textContent = `${state.drawing.length} 个角点 corners`;
}

function finishZone() {
  if (state.drawing.length < 3) { message("区域至少需要 3 个角点 A zone needs at least 3 corners", "problem"); return; }
  let n = state.zones.length + 1;
  while (state.zones.some((z) => z.id === `zone-${n}`)) n += 1;
  state.zones.push({ id: `zone-${n}`, original_id: null, kind: "dwell", label: "", lane: "", service_zone: "",
    units: "norm", polygon_px: state.drawing.slice(), polygon_m: null });
  state.selected = state.zones.length - 1;
  state.drawing = [];
  renderZoneList(); setMode("select");
  const li = document.querySelector(`#zone-list li[data-index="${state.selected}"] input.zone-id`);
  if (li) li.focus();
}

function nearest(pt) {
  const tol = HIT_PX * screenScale();
  let best = null;
  const consider = (d, what) => { if (d <= tol && (!best || d < best.d)) best = Object.assign({ d }, what); };
  state.calib.forEach((c, i) => consider(Math.hypot(c.px[0] - pt[0], c.px[1] - pt[1]), { type: "calib", i }));
  state.zones.forEach((z, zi) => (z.polygon_px || []).forEach((p, vi) =>
    consider(Math.hypot(p[0] - pt[0], p[1] - pt[1]), { type: "vertex", zi, vi })));
  return best;
}

function inside(poly, pt) {
  let c = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    if ((poly[i][1] > pt[1]) !== (poly[j][1] > pt[1]) &&
        pt[0] < (poly[j][0] - poly[i][0]) * (pt[1] - poly[i][1]) / (poly[j][1] - poly[i][1]) + poly[i][0]) c = !c;
  }
  return c;
}

function clampPt(p) {
  return [Math.min(Math.max(p[0], 0), state.size[0]), Math.min(Math.max(p[1], 0), state.size[1])];
}

canvas.addEventListener("pointerdown", (evt) => {
  const pt = clampPt(toImage(evt));
  if (state.mode === "zone") {
    if (state.drawing.length >= 3) {
      const first = state.drawing[0];
      if (Math.hypot(first[0] - pt[0], first[1] - pt[1]) <= HIT_PX * screenScale()) { finishZone(); return; }
    }
    state.drawing.push(pt); updateDrawingCount(); draw();
    return;
  }
  if (state.mode === "calib") {
    state.calib.push({ px: pt, m: [null, null], err: null });
    renderCalibTable(); draw();
    const rows = $("calib-table").querySelectorAll("tbody tr");
    const x = rows[rows.length - 1].querySelector("input.floor-x");
    if (x) x.focus();
    return;
  }
  const hit = nearest(pt);
  if (hit) {
    state.drag = hit;
    if (hit.type === "vertex") { state.selected = hit.zi; renderZoneList(); }
    canvas.setPointerCapture(evt.pointerId);
    return;
  }
  const zi = state.zones.findIndex((z) => z.polygon_px && inside(z.polygon_px, pt));
  state.selected = zi; renderZoneList(); draw();
});

canvas.addEventListener("pointermove", (evt) => {
  if (!state.drag) return;
  const pt = clampPt(toImage(evt));
  if (state.drag.type === "calib") state.calib[state.drag.i].px = pt;
  else state.zones[state.drag.zi].polygon_px[state.drag.vi] = pt;
  draw();
});

canvas.addEventListener("pointerup", () => {
  if (!state.drag) return;
  const wasCalib = state.drag.type === "calib";
  state.drag = null;
  if (wasCalib) { renderCalibTable(); schedulePreview(0); } else scheduleCheck(0);
});

// ---------------------------------------------------------------------------------------------
// save

async function save() {
  const zones = [];
  for (const z of state.zones) {
    if (!z.polygon_px) { message(`区域 ${z.id}: 需要标定才能显示 needs the calibration to be shown; not saved`, "problem"); return; }
    zones.push({ id: z.id, original_id: z.original_id, kind: z.kind, label: z.label, lane: z.lane,
      service_zone: z.service_zone, units: z.units, polygon_px: z.polygon_px });
  }
  const pairs = completePairs();
  if (state.calib.length && pairs.length !== state.calib.length) {
    message("每个标定点都需要地面坐标 Every calibration mark needs its floor X and Y", "problem");
    return;
  }
  if (pairs.length && pairs.length < 4) {
    message("标定至少需要 4 个点 Calibration needs at least 4 marks", "problem");
    return;
  }
  const body = {
    camera_id: state.camera.id, frame_size_px: state.size, zones,
    calibration: pairs.length >= 4 ? { image_points_px: pairs.map((c) => c.px), floor_points_m: pairs.map((c) => c.m) } : null,
    remove_calibration: pairs.length === 0 && state.hadCalibration,
  };
  $("save").disabled = true;
  try {
    const { status, data } = await api("/setup/api/save", body);
    if (status === 200 && data.ok) {
      message(`已保存 Saved — ${data.summary}` + (data.warnings.length ? `\n⚠ ${data.warnings.join("\n⚠ ")}` : ""), "ok");
      state.zones.forEach((z) => { z.original_id = z.id; });
      state.hadCalibration = pairs.length >= 4;
    } else {
      message(`未保存 Not saved:\n${(data.problems || [data.error]).join("\n")}`, "problem");
    }
  } finally {
    $("save").disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------

for (const b of document.querySelectorAll(".modes button")) b.addEventListener("click", () => setMode(b.dataset.mode));
$("finish-zone").addEventListener("click", finishZone);
$("cancel-zone").addEventListener("click", () => { state.drawing = []; setMode("select"); });
$("save").addEventListener("click", save);
$("refresh").addEventListener("click", () => selectCamera(state.camera.id));
$("camera").addEventListener("change", (e) => selectCamera(e.target.value));
$("show-grid").addEventListener("change", draw);
$("show-flow").addEventListener("change", draw);
$("logout").addEventListener("click", async () => {
  await fetch("/setup/logout", { method: "POST", credentials: "same-origin" });
  window.location.href = "/setup";
});
window.addEventListener("resize", draw);
setMode("select");
loadConfig().then(() => { document.body.dataset.ready = "1"; })
  .catch((err) => message(`加载失败 Loading failed: ${err.message}`, "problem"));
