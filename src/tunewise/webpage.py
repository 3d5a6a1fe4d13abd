"""The web pages ``tunewise serve`` shows at ``/``: for a text model, paste messages and see
labels, probability bars and the characters that drove each decision (``PAGE``); for an
image model, drop images and see each one's label and probability bars (``IMAGE_PAGE``).

One self-contained HTML document: no CDN, no external fonts or scripts (the service may
run where nothing outside can be reached). Message text is only ever inserted with
``textContent``, never as HTML, so an SMS containing ``<script>`` shows as text.
"""

PAGE = r"""<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tunewise · 诈骗短信识别</title>
<link rel="icon" href="/favicon.ico" type="image/svg+xml">
<style>
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC","PingFang SC",sans-serif;
max-width:960px;margin:2em auto;padding:0 1em;color:#222}
textarea{width:100%;min-height:9em;font-size:1em;padding:.5em;box-sizing:border-box}
button{font-size:1em;padding:.4em 1.2em;margin:.5em .5em .5em 0;cursor:pointer}
.row{border:1px solid #ddd;border-radius:6px;padding:.8em;margin:.8em 0}
.label{font-weight:bold;padding:.1em .5em;border-radius:4px;background:#eee}
.label.flag{background:#c62828;color:#fff}.label.ok{background:#2e7d32;color:#fff}
.bar{display:flex;align-items:center;gap:.5em;font-size:.85em;margin:.15em 0}
.bar .name{width:12em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.bar .track{flex:1;background:#f0f0f0;height:.8em;border-radius:3px}
.bar .fill{background:#1565c0;height:100%;border-radius:3px}
.text{font-size:1.1em;line-height:1.9;margin:.5em 0;word-break:break-all}
.text span{border-radius:2px}
.legend{font-size:.8em;color:#666}.error{color:#b00020}.warning{color:#8a5a00;font-size:.9em}
</style>
</head>
<body>
<h1>诈骗短信识别 · tunewise</h1>
<p>Paste one message, or several — one per line. Each gets a label, its class probabilities,
and the characters that drove the decision: <span style="background:rgba(198,40,40,.45)">red</span>
pushed towards fraud, <span style="background:rgba(46,125,50,.45)">green</span> away from it
(occlusion: how much the score changes when the character is removed; full colour at a
change of 0.25, none under 0.01).</p>
<textarea id="input" placeholder="例如：您的ETC已失效，请点击链接重新认证"></textarea>
<div><label><input type="checkbox" id="multi" checked> one message per line</label>
<label id="keybox" style="margin-left:1em" hidden>API key
<input type="password" id="key" size="18"></label></div>
<button id="go">Classify</button><span id="status"></span>
<div id="model" class="legend"></div>
<div id="results"></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;  // text, never HTML
  return e;
}
function headers() {
  const h = {"Content-Type": "application/json"};
  if ($("key").value) h["X-API-Key"] = $("key").value;
  return h;
}
async function loadModel() {
  try {
    const r = await fetch("/v1/model", {headers: headers()});
    // the key field shows only when the server asks for a key
    if (r.status === 401) { $("keybox").hidden = false; return; }
    if (!r.ok) return;
    const m = await r.json();
    $("keybox").hidden = !m.api_key_required;
    $("model").textContent = "model: " + (m.recipe || "?") + " · labels: " + m.labels.join(", ") +
      (m.threshold !== null ? " · threshold " + m.threshold.toFixed(3) : "") + " · backend " + m.backend;
  } catch (e) {}
}
function render(result) {
  const row = el("div", "row");
  const head = el("div");
  // the model's threshold when it has one, else the even odds of 1 - P(normal) = 0.5
  const flagged = result.flagged !== undefined
    ? result.flagged
    : result.fraud_score !== undefined && result.fraud_score >= 0.5;
  const cls = result.fraud_score === undefined ? "label" : "label " + (flagged ? "flag" : "ok");
  head.appendChild(el("span", cls, result.label));
  if (result.fraud_score !== undefined)
    head.appendChild(el("span", "legend", "  fraud score " + result.fraud_score.toFixed(3)));
  row.appendChild(head);
  if (result.warning) row.appendChild(el("div", "warning", "⚠ " + result.warning));
  const text = el("div", "text");
  const a = result.attribution;
  if (a) {
    // an absolute scale, the same for every message: a character that moves the score by
    // 0.25 is full colour, one that moves it by less than 0.01 is not painted at all (scaling
    // to each message's largest weight painted noise of 1e-5 red on a message scored 0.000)
    a.chars.forEach((c, i) => {
      const s = el("span", "ch", c);
      const raw = a.weights[i];
      const w = Math.abs(raw) < 0.01 ? 0 : Math.max(-1, Math.min(1, raw / 0.25));
      s.dataset.weight = String(raw);
      if (w !== 0)
        s.style.background = w > 0 ? "rgba(198,40,40," + (0.6 * w).toFixed(3) + ")"
                                   : "rgba(46,125,50," + (-0.6 * w).toFixed(3) + ")";
      s.title = (a.weights[i] >= 0 ? "+" : "") + a.weights[i].toFixed(4);
      text.appendChild(s);
    });
    if (a.truncated) text.appendChild(el("span", "legend", " … (first characters only)"));
  } else {
    text.textContent = result.text;
  }
  row.appendChild(text);
  for (const [name, p] of Object.entries(result.probabilities).sort((x, y) => y[1] - x[1])) {
    const bar = el("div", "bar");
    bar.appendChild(el("span", "name", name));
    const track = el("span", "track");
    const fill = el("span", "fill");
    fill.style.display = "block";
    fill.style.width = (100 * p).toFixed(1) + "%";
    track.appendChild(fill);
    bar.appendChild(track);
    bar.appendChild(el("span", "", (100 * p).toFixed(1) + "%"));
    row.appendChild(bar);
  }
  return row;
}
async function classify() {
  const raw = $("input").value;
  const texts = ($("multi").checked ? raw.split("\n") : [raw]).map((t) => t.trim()).filter((t) => t);
  const out = $("results");
  out.replaceChildren();
  if (!texts.length) { $("status").textContent = " nothing to classify"; return; }
  $("status").textContent = " classifying " + texts.length + "…";
  try {
    const r = await fetch("/v1/classify", {method: "POST", headers: headers(),
                                           body: JSON.stringify({texts: texts, explain: true})});
    const body = await r.json();
    if (!r.ok) {
      const msg = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      out.appendChild(el("p", "error", "error " + r.status + ": " + msg));
      $("status").textContent = "";
      return;
    }
    body.results.forEach((res) => out.appendChild(render(res)));
    $("status").textContent = " done";
  } catch (e) {
    out.appendChild(el("p", "error", String(e)));
    $("status").textContent = "";
  }
}
$("go").addEventListener("click", classify);
loadModel();
</script>
</body>
</html>
"""

IMAGE_PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tunewise · image classification</title>
<link rel="icon" href="/favicon.ico" type="image/svg+xml">
<style>
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC",sans-serif;
max-width:960px;margin:2em auto;padding:0 1em;color:#222}
#drop{border:2px dashed #90a4ae;border-radius:8px;padding:2.5em;text-align:center;color:#546e7a;
cursor:pointer}
#drop.over{background:#e3f2fd;border-color:#1565c0}
.row{display:flex;gap:1em;border:1px solid #ddd;border-radius:6px;padding:.8em;margin:.8em 0}
.row img{width:128px;height:128px;object-fit:contain;background:#fafafa}
.info{flex:1}.label{font-weight:bold;padding:.1em .5em;border-radius:4px;background:#eee}
.bar{display:flex;align-items:center;gap:.5em;font-size:.85em;margin:.15em 0}
.bar .name{width:12em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.bar .track{flex:1;background:#f0f0f0;height:.8em;border-radius:3px}
.bar .fill{display:block;background:#1565c0;height:100%;border-radius:3px}
.legend{font-size:.8em;color:#666}.error{color:#b00020}
</style>
</head>
<body>
<h1>Image classification · tunewise</h1>
<div id="drop">Drop images here, or click to choose files
<input type="file" id="files" accept="image/*" multiple hidden></div>
<div><label id="keybox" hidden>API key <input type="password" id="key" size="18"></label>
<span id="status"></span></div>
<div id="model" class="legend"></div>
<div id="results"></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;  // text, never HTML
  return e;
}
function headers(extra) {
  const h = Object.assign({}, extra || {});
  if ($("key").value) h["X-API-Key"] = $("key").value;
  return h;
}
async function loadModel() {
  try {
    const r = await fetch("/v1/model", {headers: headers()});
    // the key field shows only when the server asks for a key
    if (r.status === 401) { $("keybox").hidden = false; return; }
    if (!r.ok) return;
    const m = await r.json();
    $("keybox").hidden = !m.api_key_required;
    $("model").textContent = "model: " + (m.recipe || "?") + " (" + (m.architecture || "?") + ", " +
      m.image_size + "px) · labels: " + m.labels.join(", ") + " · backend " + m.backend;
  } catch (e) {}
}
function render(file, result) {
  const row = el("div", "row");
  const img = document.createElement("img");
  img.alt = file.name;
  img.src = URL.createObjectURL(file);
  row.appendChild(img);
  const info = el("div", "info");
  const head = el("div");
  head.appendChild(el("span", "label", result.label));
  head.appendChild(el("span", "legend", "  " + file.name + " · " + result.width + "x" + result.height));
  info.appendChild(head);
  for (const [name, p] of Object.entries(result.probabilities).sort((x, y) => y[1] - x[1])) {
    const bar = el("div", "bar");
    bar.appendChild(el("span", "name", name));
    const track = el("span", "track");
    const fill = el("span", "fill");
    fill.style.width = (100 * p).toFixed(1) + "%";
    track.appendChild(fill);
    bar.appendChild(track);
    bar.appendChild(el("span", "", (100 * p).toFixed(1) + "%"));
    info.appendChild(bar);
  }
  row.appendChild(info);
  return row;
}
async function classify(files) {
  const out = $("results");
  for (const file of files) {
    $("status").textContent = " classifying " + file.name + "…";
    try {
      const r = await fetch("/v1/classify-image?name=" + encodeURIComponent(file.name), {
        method: "POST", body: file,
        headers: headers({"Content-Type": file.type || "application/octet-stream"})});
      const body = await r.json();
      if (!r.ok) {
        const msg = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
        out.prepend(el("p", "error", file.name + ": error " + r.status + ": " + msg));
        continue;
      }
      out.prepend(render(file, body.results[0]));
    } catch (e) {
      out.prepend(el("p", "error", file.name + ": " + String(e)));
    }
  }
  $("status").textContent = " done";
}
const drop = $("drop");
drop.addEventListener("click", () => $("files").click());
$("files").addEventListener("change", (e) => classify(Array.from(e.target.files)));
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  classify(Array.from(e.dataTransfer.files));
});
loadModel();
</script>
</body>
</html>
"""
