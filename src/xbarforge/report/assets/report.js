// xbarforge report page: the crossbar occupancy map (inlined into the page by xbarforge.report.html).
(function () {
  "use strict";
  var BG = [242, 242, 242];
  function fmt(n) { return Math.round(n).toLocaleString("en-US"); }
  function pct(x) { return (100 * x).toFixed(1) + "%"; }
  function rgbOf(hex) { var v = parseInt(hex.slice(1), 16); return [(v >> 16) & 255, (v >> 8) & 255, v & 255]; }
  function blend(rgb, f) {
    return "rgb(" + rgb.map(function (c, i) { return Math.round(f * c + (1 - f) * BG[i]); }).join(",") + ")";
  }

  function initOccupancy(root) {
    var data = JSON.parse(root.querySelector("script.occ-data").textContent);
    var canvas = root.querySelector("canvas"), ctx = canvas.getContext("2d");
    var tip = root.querySelector(".occ-tip"), info = root.querySelector(".occ-info");
    var zoom = root.querySelector(".occ-zoom"), fitBtn = root.querySelector(".occ-fit");
    var roundSel = root.querySelector(".occ-round");
    var legend = root.querySelectorAll(".occ-legend li");
    var cellsPer = data.rows * data.cols;
    var rgb = data.colors.map(rgbOf);
    var comps = data.comps.map(function (parts) {
      var total = 0, top = -1, best = -1, has = {};
      parts.forEach(function (p) { total += p[1]; has[p[0]] = p[1]; if (p[1] > best) { best = p[1]; top = p[0]; } });
      var fill = Math.min(1, total / cellsPer);
      return { parts: parts, total: total, fill: fill, has: has,
               color: top < 0 ? "rgb(242,242,242)" : blend(rgb[top], 0.15 + 0.85 * fill) };
    });
    var rounds = data.rounds.map(function (r) {
      var n = r.comp.length, ids = new Int32Array(n), k = 0;
      r.ids.forEach(function (range) { for (var j = 0; j < range[1]; j++) { ids[k++] = range[0] + j; } });
      return { round: r.round, ids: ids, comp: Int32Array.from(r.comp) };
    });
    var cur = rounds[0], gcols = 1, grows = 1, size = 4, ox = 0, oy = 0, hi = -1, drag = null;

    function layout() {
      var n = cur.comp.length;
      gcols = Math.max(1, Math.ceil(Math.sqrt(n * 2.4)));
      grows = Math.max(1, Math.ceil(n / gcols));
    }
    function view() { return { w: canvas.clientWidth, h: canvas.clientHeight }; }
    function fitSize() {
      var v = view();
      return Math.max(1, Math.min(48, Math.floor(Math.min(v.w / gcols, v.h / grows))));
    }
    function clamp() {
      var v = view();
      ox = Math.max(0, Math.min(ox, gcols * size - v.w));
      oy = Math.max(0, Math.min(oy, grows * size - v.h));
    }
    function resize() {
      // as tall as the whole grid at the width's fit, within 160..480 px (then pan)
      var w = canvas.clientWidth, fitW = Math.max(1, Math.min(48, Math.floor(w / gcols)));
      canvas.style.height = Math.max(160, Math.min(480, grows * fitW + 2)) + "px";
      var dpr = window.devicePixelRatio || 1, v = view();
      canvas.width = Math.max(1, Math.round(v.w * dpr));
      canvas.height = Math.max(1, Math.round(v.h * dpr));
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    }
    function draw() {
      var v = view();
      clamp();
      ctx.fillStyle = "#ffffff";
      ctx.fillRect(0, 0, v.w, v.h);
      var n = cur.comp.length, gap = size >= 6 ? 1 : 0, s = size - gap, detailed = size >= 12;
      var c0 = Math.floor(ox / size), c1 = Math.min(gcols, Math.ceil((ox + v.w) / size));
      var r0 = Math.floor(oy / size), r1 = Math.min(grows, Math.ceil((oy + v.h) / size));
      for (var r = r0; r < r1; r++) {
        for (var c = c0; c < c1; c++) {
          var i = r * gcols + c;
          if (i >= n) { break; }
          var cp = comps[cur.comp[i]], x = c * size - ox, y = r * size - oy;
          var on = hi < 0 || cp.has[hi] !== undefined;
          if (!detailed) {
            ctx.fillStyle = !on ? "rgb(232,232,232)" : (hi < 0 ? cp.color : blend(rgb[hi], 0.15 + 0.85 * cp.fill));
            ctx.fillRect(x, y, s, s);
            continue;
          }
          ctx.fillStyle = "rgb(242,242,242)";
          ctx.fillRect(x, y, s, s);
          var yb = y + s;
          for (var k = 0; k < cp.parts.length; k++) {
            var p = cp.parts[k], h = s * p[1] / cellsPer;
            ctx.fillStyle = on ? data.colors[p[0]] : "rgb(214,214,214)";
            if (on && hi >= 0 && p[0] !== hi) { ctx.fillStyle = blend(rgb[p[0]], 0.3); }
            ctx.fillRect(x, yb - h, s, h);
            yb -= h;
          }
          ctx.strokeStyle = "rgba(0,0,0,0.35)";
          ctx.lineWidth = 0.5;
          ctx.strokeRect(x + 0.25, y + 0.25, s - 0.5, s - 0.5);
        }
      }
      info.textContent = fmt(n) + " crossbars in a " + gcols + " x " + grows + " grid, " + size +
        " px per crossbar" + (hi >= 0 ? "; highlighted: " + data.layers[hi] : "");
      root.setAttribute("data-drawn", String(n));
    }
    function setSize(newSize, mx, my) {
      newSize = Math.max(1, Math.min(48, Math.round(newSize)));
      if (mx === undefined) { var v = view(); mx = v.w / 2; my = v.h / 2; }
      ox = (ox + mx) * newSize / size - mx;
      oy = (oy + my) * newSize / size - my;
      size = newSize;
      zoom.value = String(size);
      draw();
    }
    function fit() { size = fitSize(); zoom.value = String(size); ox = 0; oy = 0; draw(); }
    function at(ev) {
      var b = canvas.getBoundingClientRect(), mx = ev.clientX - b.left, my = ev.clientY - b.top;
      var c = Math.floor((mx + ox) / size), r = Math.floor((my + oy) / size), i = r * gcols + c;
      return { mx: mx, my: my, i: (c >= 0 && c < gcols && r >= 0 && i < cur.comp.length) ? i : -1 };
    }
    function line(color, text) {
      var d = document.createElement("div");
      if (color) { var sw = document.createElement("span"); sw.className = "sw"; sw.style.background = color; d.appendChild(sw); }
      var t = document.createElement("span"); t.textContent = text; d.appendChild(t);
      tip.appendChild(d);
    }
    function showTip(ev) {
      var a = at(ev);
      if (a.i < 0) { tip.style.display = "none"; return; }
      var cp = comps[cur.comp[a.i]];
      tip.textContent = "";
      var head = document.createElement("b");
      head.textContent = "crossbar " + cur.ids[a.i] + (rounds.length > 1 ? " (round " + (cur.round + 1) + ")" : "");
      tip.appendChild(head);
      if (!cp.parts.length) {
        line(null, "empty" + (data.budget ? ": a crossbar of the budget that holds no weights" : ""));
      } else {
        line(null, (data.exact ? "" : "about ") + pct(cp.fill) + " full: " + fmt(cp.total) + " of " +
             fmt(cellsPer) + " cells hold weights");
        cp.parts.slice(0, 12).forEach(function (p) {
          line(data.colors[p[0]], data.layers[p[0]] + ": " + fmt(p[1]) + " cells (" + pct(p[1] / cellsPer) + ")");
        });
        if (cp.parts.length > 12) { line(null, "+" + (cp.parts.length - 12) + " more layers"); }
      }
      tip.style.display = "block";
      var v = view(), left = a.mx + 16, top = a.my + 16;
      if (left + tip.offsetWidth > v.w) { left = Math.max(0, a.mx - tip.offsetWidth - 8); }
      if (top + tip.offsetHeight > v.h) { top = Math.max(0, a.my - tip.offsetHeight - 8); }
      tip.style.left = left + "px";
      tip.style.top = top + "px";
    }
    canvas.addEventListener("pointerdown", function (ev) {
      drag = { x: ev.clientX, y: ev.clientY, ox: ox, oy: oy };
      canvas.classList.add("drag");
      if (canvas.setPointerCapture) { canvas.setPointerCapture(ev.pointerId); }
    });
    canvas.addEventListener("pointermove", function (ev) {
      if (drag) {
        ox = drag.ox - (ev.clientX - drag.x);
        oy = drag.oy - (ev.clientY - drag.y);
        tip.style.display = "none";
        draw();
      } else {
        showTip(ev);
      }
    });
    function endDrag() { drag = null; canvas.classList.remove("drag"); }
    canvas.addEventListener("pointerup", endDrag);
    canvas.addEventListener("pointercancel", endDrag);
    canvas.addEventListener("pointerleave", function () { tip.style.display = "none"; });
    canvas.addEventListener("wheel", function (ev) {
      var v = view(), a = at(ev);
      if (ev.ctrlKey || ev.metaKey) {
        ev.preventDefault();
        setSize(size * (ev.deltaY < 0 ? 1.25 : 0.8) + (ev.deltaY < 0 ? 1 : -1) * (size < 4 ? 1 : 0), a.mx, a.my);
      } else if (gcols * size > v.w || grows * size > v.h) {
        ev.preventDefault();
        ox += ev.shiftKey ? ev.deltaY : ev.deltaX;
        oy += ev.shiftKey ? 0 : ev.deltaY;
        draw();
      }
    }, { passive: false });
    zoom.addEventListener("input", function () { setSize(Number(zoom.value)); });
    fitBtn.addEventListener("click", fit);
    if (roundSel) {
      roundSel.addEventListener("change", function () {
        cur = rounds[Number(roundSel.value)];
        layout();
        resize();
        fit();
      });
    }
    Array.prototype.forEach.call(legend, function (li) {
      li.addEventListener("click", function () {
        var l = Number(li.getAttribute("data-layer"));
        hi = hi === l ? -1 : l;
        Array.prototype.forEach.call(legend, function (o) { o.classList.toggle("on", Number(o.getAttribute("data-layer")) === hi); });
        draw();
      });
    });
    window.addEventListener("resize", function () { resize(); draw(); });
    layout();
    resize();
    fit();
  }

  Array.prototype.forEach.call(document.querySelectorAll(".occ"), initOccupancy);
})();
