// Small SVG charts for the live wallboard, drawn with DOM calls (no inline styles: the pages'
// CSP allows none): a line per series over the day's intervals, an optional goal line.
const NS = "http://www.w3.org/2000/svg";
const W = 320, H = 120, PAD = { l: 34, r: 6, t: 8, b: 18 };

function el(name, attrs, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

// points: [{t: iso, value: number|null}], kind "bar" or "line"; max: the y axis' top (or auto)
export function drawChart(svg, points, { kind = "line", max = null, goal = null, unit = "" } = {}) {
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.replaceChildren();
  const values = points.map((p) => p.value).filter((v) => v !== null && v !== undefined);
  const top = max ?? Math.max(1, ...values, goal ?? 0) * 1.1;
  const x0 = PAD.l, x1 = W - PAD.r, y0 = H - PAD.b, y1 = PAD.t;
  const n = Math.max(points.length, 1);
  const x = (i) => x0 + ((i + 0.5) * (x1 - x0)) / n;
  const y = (v) => y0 - (v / top) * (y0 - y1);
  svg.append(el("line", { x1: x0, y1: y0, x2: x1, y2: y0, class: "axis" }));
  svg.append(el("text", { x: x0 - 4, y: y1 + 8, class: "tick", "text-anchor": "end" },
    `${Math.round(top)}${unit}`));
  svg.append(el("text", { x: x0 - 4, y: y0, class: "tick", "text-anchor": "end" }, "0"));
  if (goal !== null) svg.append(el("line", { x1: x0, x2: x1, y1: y(goal), y2: y(goal), class: "goal" }));
  if (points.length) {
    svg.append(el("text", { x: x0, y: H - 4, class: "tick" }, points[0].t.slice(11, 16)));
    svg.append(el("text", { x: x1, y: H - 4, class: "tick", "text-anchor": "end" },
      points[points.length - 1].t.slice(11, 16)));
  }
  if (kind === "bar") {
    const w = Math.max(1, ((x1 - x0) / n) * 0.7);
    points.forEach((p, i) => {
      if (p.value === null || p.value === undefined) return;
      svg.append(el("rect", { x: x(i) - w / 2, y: y(p.value), width: w, height: y0 - y(p.value),
        class: "bar", "data-value": p.value }));
    });
  } else {
    const d = points.map((p, i) => (p.value === null || p.value === undefined ? null
      : `${x(i).toFixed(1)},${y(p.value).toFixed(1)}`)).filter(Boolean);
    if (d.length) svg.append(el("polyline", { points: d.join(" "), class: "line" }));
    points.forEach((p, i) => {
      if (p.value !== null && p.value !== undefined) {
        svg.append(el("circle", { cx: x(i), cy: y(p.value), r: 2, class: "dot", "data-value": p.value }));
      }
    });
  }
  svg.dataset.points = String(points.length);
}
