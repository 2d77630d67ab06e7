/* The trace view of the `vpd show` pages (the trace report and the run report), shared: the
 * program with which lines ran and the calls beside each line, the image with its boxes
 * (linked to the lines and calls), the legend, the crops and the execution-trace text.
 * Concatenated with the page's own script inside one function (vpd.render.report), so
 * these names are private to the page. Every text from a trace is untrusted: it only ever
 * reaches the page through text nodes and attribute values, never through innerHTML. */
  var DATA = JSON.parse(document.getElementById("vpd-data").textContent);
  var EVENTS_SHOWN = 6;
  var SVG = "http://www.w3.org/2000/svg";
  var el = function (id) { return document.getElementById(id); };
  var waiting = false; // the trace shown wants an image whose block is not parsed yet
  var thumbs = typeof IntersectionObserver === "function" ? new IntersectionObserver(function (entries) {
    entries.forEach(function (entry) {
      if (!entry.isIntersecting) return;
      thumbs.unobserve(entry.target);
      var node = entry.target.querySelector("image");
      if (node) node.setAttribute("href", entry.target.vpdHref);
    });
  }, { rootMargin: "200px" }) : null;

  function h(tag, attrs, kids) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === "text") node.textContent = attrs[k];
        else if (k === "bg") node.style.background = attrs[k];
        else node.setAttribute(k, attrs[k]);
      });
    }
    (kids || []).forEach(function (kid) {
      if (kid === null || kid === undefined) return;
      node.appendChild(typeof kid === "string" ? document.createTextNode(kid) : kid);
    });
    return node;
  }

  function s(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }

  function boxText(b) {
    return "[" + b.map(function (v) { return String(v); }).join(", ") + "]";
  }

  function area(b) { return Math.abs((b[2] - b[0]) * (b[3] - b[1])); }

  function seconds(v) {
    return v < 1 ? Math.round(v * 1000) + " ms" : v.toFixed(2) + " s";
  }

  // -- images: read from their block when needed -------------------------------------------
  // null: no image; undefined: its block is not (completely) parsed yet.
  function image(key) {
    if (key === null || key === undefined) return null;
    var node = document.getElementById("vpd-img-" + key);
    if (!node || (document.readyState === "loading" && !node.nextSibling)) return undefined;
    return { url: node.textContent, sha256: node.getAttribute("data-sha256"),
      w: Number(node.getAttribute("data-w")), h: Number(node.getAttribute("data-h")) };
  }

  // a crop thumbnail gets its image once it scrolls into view
  function lazyHref(fig, node, url) {
    if (thumbs) {
      fig.vpdHref = url;
      thumbs.observe(fig);
    } else {
      node.setAttribute("href", url);
    }
  }

  function facts(t) {
    var v = t.v, parts = [];
    if (v.ok) parts.push(h("span", {}, [h("b", { text: "Answer " }), h("code", { text: v.answer })]));
    else parts.push(h("span", { "class": "vpd-badge vpd-bad", text: "failed: " + (v.error ? v.error.kind : "error") }));
    if (t.l !== null) parts.push(h("span", {}, [h("b", { text: "Label " }), h("code", { text: t.l })]));
    if (t.c === true) parts.push(h("span", { "class": "vpd-badge vpd-ok", text: "correct" }));
    if (t.c === false) parts.push(h("span", { "class": "vpd-badge vpd-bad", text: "wrong" }));
    parts.push(h("span", { "class": "vpd-muted", text: v.tool_calls + " tool call" + (v.tool_calls === 1 ? "" : "s") +
      " \u00b7 " + seconds(v.wall_seconds) + " (tools " + seconds(v.tool_seconds) + ")" }));
    parts.push(h("span", { "class": "vpd-muted", text: "image " + (v.image.width || "?") + "\u00d7" +
      (v.image.height || "?") + " " + (v.image.sha256 || "").slice(0, 12) }));
    parts.push(h("span", { "class": "vpd-muted", text: t.id === t.src ? t.src : t.id + " (" + t.src + ")" }));
    return h("div", { "class": "vpd-facts" }, parts);
  }

  function eventNode(e) {
    if (e.kind === "call") {
      var kids = [h("span", { "class": "vpd-op", text: e.text })];
      if (e.region) kids.push(" ", h("span", { "class": "vpd-muted", text: "on " + boxText(e.region) }));
      kids.push(" \u2192 ");
      var failed = e.error !== undefined && e.error !== null, boxes = e.boxes || [];
      kids.push(failed ? h("span", { "class": "vpd-err", text: "error: " + e.error })
        : h("span", { "class": "vpd-res", text: e.result || "" }));
      kids.push(" ");
      boxes.slice(0, 20).forEach(function (n) {
        kids.push(h("span", { "class": "vpd-chip", bg: e.color, text: String(n), "data-box": String(n),
          "data-box-line": e.line === null || e.line === undefined ? "" : String(e.line) }));
      });
      if (boxes.length > 20) kids.push(h("span", { "class": "vpd-muted", text: "+" + (boxes.length - 20) }));
      kids.push(" ", h("span", { "class": "vpd-info", text: e.info || "" }));
      return h("div", { "class": "vpd-call" + (failed ? " vpd-failed" : "") }, kids);
    }
    if (e.kind === "assign") return h("div", { "class": "vpd-assign", text: e.text });
    return h("div", { "class": "vpd-print", text: "print: " + e.text });
  }

  function eventsNode(events) {
    var td = h("td", { "class": "vpd-ev" }, events.slice(0, EVENTS_SHOWN).map(eventNode));
    if (events.length > EVENTS_SHOWN) {
      td.appendChild(h("details", {}, [h("summary", { text: (events.length - EVENTS_SHOWN) + " more events" })]
        .concat(events.slice(EVENTS_SHOWN).map(eventNode))));
    }
    return td;
  }

  // ran / did not run / return / failed, as vpd.render.html.line_mark computes them
  function lineMark(v, n) {
    var runs = n <= v.line_runs.length ? v.line_runs[n - 1] : null;
    var cls = runs === null || runs === undefined ? [] : [runs ? "vpd-ran" : "vpd-notrun"];
    var err = v.error || {};
    if (n === err.line) {
      cls.push("vpd-errline");
      return err.kind === "timeout" ? [cls, "stopped", "this line was running when the program was stopped"]
        : [cls, "failed", "the error happened on this line"];
    }
    if (n === v.return_line) { cls.push("vpd-returned"); return [cls, "return", "the answer was returned from this line"]; }
    if (runs > 1) return [cls, "\u00d7" + runs, "ran " + runs + " times"];
    if (runs === 0) return [cls, "", "this line did not run"];
    return [cls, "", ""];
  }

  function program(v) {
    var byLine = {}, orphans = [];
    v.events.forEach(function (e) {
      if (e.line !== null && e.line >= 1 && e.line <= v.program_lines.length) (byLine[e.line] = byLine[e.line] || []).push(e);
      else orphans.push(e);
    });
    var cols = h("colgroup", {}, ["vpd-c-no", "vpd-c-mark", "vpd-c-src", "vpd-c-ev"].map(function (c) {
      return h("col", { "class": c });
    }));
    var rows = v.program_lines.map(function (code, i) {
      var n = i + 1, mark = lineMark(v, n), attrs = { "data-line": String(n) };
      if (mark[0].length) attrs["class"] = mark[0].join(" ");
      var markAttrs = { "class": "vpd-mark", text: mark[1] };
      if (mark[2]) markAttrs.title = mark[2];
      return h("tr", attrs, [
        h("td", { "class": "vpd-no", text: String(n) }),
        h("td", markAttrs),
        h("td", { "class": "vpd-src" }, [h("code", { text: code })]),
        eventsNode(byLine[n] || [])
      ]);
    });
    if (orphans.length) {
      rows.push(h("tr", {}, [h("td", { "class": "vpd-no", text: "\u2013" }), h("td", { "class": "vpd-mark" }),
        h("td", { "class": "vpd-src vpd-muted", text: "(no program line)" }), eventsNode(orphans)]));
    }
    var kids = [h("table", { "class": "vpd-prog" }, [cols].concat(rows))];
    if (v.line_runs.some(function (r) { return r !== null; })) kids.push(h("div", { "class": "vpd-key", text: DATA.lineKey }));
    return h("div", {}, kids);
  }

  // -- image <-> code: a box, its legend row, its call chip and its line light up together ----
  function link(view, line, n, on) {
    if (line !== null && line !== undefined) {
      view.querySelectorAll("tr[data-line='" + line + "']").forEach(function (tr) { tr.classList.toggle("vpd-hot", on); });
    }
    var sel = n !== null ? "[data-box='" + n + "']" : "[data-box-line='" + line + "']";
    view.querySelectorAll(sel).forEach(function (node) { node.classList.toggle("vpd-hot", on); });
  }

  function wireLinks(view) {
    var pinned = null;
    function target(ev) {
      var node = ev.target.closest("[data-box], tr[data-line]");
      if (!node || !view.contains(node)) return null;
      if (node.hasAttribute("data-box")) {
        var line = node.getAttribute("data-box-line");
        return { line: line === "" ? null : line, n: node.getAttribute("data-box") };
      }
      return { line: node.getAttribute("data-line"), n: null };
    }
    view.addEventListener("mouseover", function (ev) { var t = target(ev); if (t && !pinned) link(view, t.line, t.n, true); });
    view.addEventListener("mouseout", function (ev) { var t = target(ev); if (t && !pinned) link(view, t.line, t.n, false); });
    view.addEventListener("click", function (ev) {
      var t = target(ev);
      if (!t || (t.n === null && !ev.target.closest(".vpd-no, .vpd-mark, .vpd-src"))) return;
      if (pinned) link(view, pinned.line, pinned.n, false);
      var same = pinned && pinned.line === t.line && pinned.n === t.n;
      pinned = same ? null : t;
      if (pinned) {
        link(view, t.line, t.n, true);
        var row = t.line !== null ? view.querySelector("tr[data-line='" + t.line + "']") : null;
        if (row && t.n !== null && row.scrollIntoView) row.scrollIntoView({ block: "nearest" });
      }
    });
  }

  function overlay(v, W, H) {
    var svg = s("svg", { "class": "vpd-overlay", viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none" });
    var fs = Math.max(W, H) / 45;
    // largest first, so a small box drawn over a large one stays reachable by the pointer
    var order = v.boxes.map(function (b, i) { return [b, i]; });
    order.sort(function (p, q) { return area(q[0].box) - area(p[0].box) || p[1] - q[1]; });
    order.forEach(function (pair) {
      var b = pair[0], i = pair[1];
      var x0 = Math.min(b.box[0], b.box[2]), y0 = Math.min(b.box[1], b.box[3]);
      var g = s("g", { "class": "vpd-box", "data-box": String(b.n), "data-box-line": b.line === null || b.line === undefined ? "" : String(b.line) });
      var title = s("title", {});
      title.textContent = b.n + " " + b.label + " " + boxText(b.box) + " \u2014 " + b.source;
      g.appendChild(title);
      g.appendChild(s("rect", { x: x0, y: y0, width: Math.abs(b.box[2] - b.box[0]), height: Math.abs(b.box[3] - b.box[1]),
        fill: "transparent", stroke: b.color, "stroke-width": 2, "vector-effect": "non-scaling-stroke" }));
      var label = i < 12 ? b.n + " " + b.label : String(b.n);
      var tw = label.length * fs * 0.6 + fs * 0.5, th = fs * 1.3;
      var ty = y0 - th >= 0 ? y0 - th : y0, tx = Math.max(0, Math.min(x0, W - tw));
      g.appendChild(s("rect", { x: tx, y: ty, width: tw, height: th, fill: b.color }));
      var text = s("text", { x: tx + fs * 0.25, y: ty + fs, fill: "#fff", "font-size": fs, "font-family": "sans-serif" });
      text.textContent = label;
      g.appendChild(text);
      svg.appendChild(g);
    });
    return svg;
  }

  function figure(t) {
    var v = t.v, img = image(t.img);
    if (img === undefined) waiting = true;
    var W = v.image.width || (img ? img.w : 640), H = v.image.height || (img ? img.h : 480);
    var notes = [], stage;
    if (img) {
      stage = h("div", { "class": "vpd-stage" }, [h("img", { src: img.url, alt: "the image, with the boxes tools returned" })]);
      stage.appendChild(overlay(v, W, H));
      if (img.sha256 && v.image.sha256 && img.sha256 !== v.image.sha256) {
        notes.push("This image is not the one the program ran on (different sha256); boxes may not line up.");
      }
    } else {
      var blank = s("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img",
        "aria-label": "blank canvas with the boxes" });
      blank.appendChild(s("rect", { x: 0, y: 0, width: W, height: H, fill: "#e2e4e8" }));
      stage = h("div", { "class": "vpd-stage" }, [blank]);
      stage.appendChild(overlay(v, W, H));
      if (img === undefined) notes.push("Loading the image\u2026");
      else notes.push("Image not available" + (t.imgNote ? " (" + t.imgNote + ")" : "") + ": boxes drawn on a blank canvas of its size.");
    }
    var kids = [h("figure", { "class": "vpd-figure" }, [stage, h("figcaption", { text: DATA.convention })])];
    notes.forEach(function (n) { kids.push(h("div", { "class": "vpd-note", text: n })); });
    if (v.boxes.length) {
      kids.push(h("table", { "class": "vpd-legend" }, v.boxes.slice(0, 100).map(function (b) {
        return h("tr", { "data-box": String(b.n), "data-box-line": b.line === null || b.line === undefined ? "" : String(b.line) }, [
          h("td", {}, [h("span", { "class": "vpd-swatch", bg: b.color }), String(b.n)]),
          h("td", { text: b.label }), h("td", {}, [h("code", { text: boxText(b.box) })]),
          h("td", { "class": "vpd-muted", text: b.source })]);
      })));
      if (v.boxes.length > 100) kids.push(h("div", { "class": "vpd-muted", text: "\u2026 " + (v.boxes.length - 100) + " more" }));
    } else {
      kids.push(h("div", { "class": "vpd-muted", text: "No tool returned a box." }));
    }
    if (v.regions.length) {
      kids.push(h("h4", { text: "Regions the tools looked at" }));
      kids.push(h("div", { "class": "vpd-crops" }, v.regions.slice(0, 16).map(function (r) {
        var fig = h("figure", { "class": "vpd-crop" });
        var w = Math.max(1, r.box[2] - r.box[0]), hh = Math.max(1, r.box[3] - r.box[1]);
        if (img) {
          var k = 112 / Math.max(w, hh);
          var svg = s("svg", { viewBox: r.box[0] + " " + r.box[1] + " " + w + " " + hh,
            width: Math.round(w * k), height: Math.round(hh * k), preserveAspectRatio: "none" });
          var node = s("image", { x: 0, y: 0, width: W, height: H, preserveAspectRatio: "none" });
          svg.appendChild(node);
          fig.appendChild(svg);
          lazyHref(fig, node, img.url);
        }
        fig.appendChild(h("code", { text: boxText(r.box) }));
        fig.appendChild(h("br"));
        fig.appendChild(document.createTextNode(r.label));
        return fig;
      })));
    }
    return h("div", { "class": "vpd-side" }, kids);
  }

  function textPair(t) {
    var trace = [h("h4", { text: "Execution trace (text for distillation)" }), h("pre", { text: t.v.text })];
    if (t.r) {
      return h("div", { "class": "vpd-pair" }, [h("div", {}, trace),
        h("div", {}, [h("h4", { text: "Rationale" }), h("pre", { text: t.r })])]);
    }
    return h("div", {}, trace);
  }

  // the body of one trace's view: facts, error, notes, program and image, text, other fields
  function traceBody(t) {
    var v = t.v;
    if (thumbs) thumbs.disconnect();
    var kids = [facts(t)];
    if (v.error) {
      kids.push(h("div", { "class": "vpd-error" }, [h("b", { text: v.error.kind + (v.error.line ? " at line " + v.error.line : "") }),
        ": " + v.error.message]));
    }
    v.notes.forEach(function (n) { kids.push(h("div", { "class": "vpd-note", text: n })); });
    kids.push(h("div", { "class": "vpd-cols" }, [h("div", { "class": "vpd-code" }, [program(v)]), figure(t)]));
    kids.push(textPair(t));
    if (t.x) {
      kids.push(h("h4", { text: "Other fields" }));
      kids.push(h("table", { "class": "r-fields" }, Object.keys(t.x).map(function (k) {
        return h("tr", {}, [h("td", {}, [h("b", { text: k })]), h("td", {}, [h("code", { text: t.x[k] })])]);
      })));
    }
    return kids;
  }

  // -- the pages' list: a virtual list of rows, a search box, the keys -------------------------
  // A row thumbnail (an inert block, read when the row is drawn); a small image is its own.
  function thumb(key) {
    if (key === null || key === undefined) return null;
    var node = document.getElementById("vpd-th-" + key) || document.getElementById("vpd-img-" + key);
    return node ? node.textContent : null;
  }

  // The visible window of a virtual list: row p (its cells from cells(p)) at p * height,
  // only the rows in view (and a few around) exist; sel is the selected position (or -1).
  function drawWindow(count, height, sel, cells, rowClass) {
    var list = el("r-list"), spacer = el("r-spacer");
    var first = Math.max(0, Math.floor(list.scrollTop / height) - 5);
    var last = Math.min(count, first + Math.ceil(list.clientHeight / height) + 10);
    var rows = [];
    for (var p = first; p < last; p++) {
      var row = h("div", { "class": "r-row" + (rowClass ? rowClass(p) : "") + (p === sel ? " r-sel" : ""), role: "option",
        id: "r-row-" + p, "aria-selected": p === sel ? "true" : "false", "data-pos": String(p) }, cells(p));
      row.style.top = p * height + "px";
      rows.push(row);
    }
    spacer.replaceChildren.apply(spacer, rows);
    if (sel >= 0) list.setAttribute("aria-activedescendant", "r-row-" + sel);
    else list.removeAttribute("aria-activedescendant");
  }

  // Scrolls the list just enough to show the row at position sel.
  function scrollToRow(sel, height) {
    var list = el("r-list"), top = sel * height;
    if (top < list.scrollTop) list.scrollTop = top;
    else if (top + height > list.scrollTop + list.clientHeight) list.scrollTop = top + height - list.clientHeight;
  }

  // -- the page's state in the URL's # part ---------------------------------------------------
  // fields: [key, value, value that needs no mention]; the URL changes only when the state does.
  function writeHash(fields) {
    var p = new URLSearchParams();
    fields.forEach(function (f) { if (f[1] !== f[2]) p.set(f[0], f[1]); });
    var hash = p.toString();
    if (hash !== location.hash.slice(1)) history.replaceState(null, "", hash ? "#" + hash : location.pathname);
  }

  // Selects the option `value` of `select`, if it has one (a link may name a filter this page lacks).
  function chooseOption(select, value) {
    if (value && select.querySelector("option[value='" + CSS.escape(value) + "']")) select.value = value;
  }

  // Wires #r-list, #r-spacer, #r-q and the keys to a page: page.size (rows in all),
  // page.filter(mode), page.select(pos), page.draw(), page.sel() and page.count() (rows shown),
  // page.rowHeight, page.selects (the filter <select>s), page.show() (on DOMContentLoaded).
  function wireList(page) {
    var list = el("r-list"), spacer = el("r-spacer"), search = el("r-q"), detail = el("r-detail"), timer = 0;
    search.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { page.filter("first"); }, page.size > 2000 ? 150 : 30);
    });
    page.selects.forEach(function (node) { node.addEventListener("change", function () { page.filter("first"); }); });
    list.addEventListener("scroll", page.draw, { passive: true });
    window.addEventListener("resize", page.draw);
    spacer.addEventListener("click", function (ev) {
      var row = ev.target.closest(".r-row");
      if (row) { page.select(parseInt(row.getAttribute("data-pos"), 10)); list.focus(); }
    });
    list.addEventListener("keydown", function (ev) {
      var step = Math.max(1, Math.floor(list.clientHeight / page.rowHeight) - 1), sel = page.sel();
      var moves = { ArrowDown: 1, j: 1, ArrowUp: -1, k: -1, PageDown: step, PageUp: -step };
      if (ev.key in moves) page.select(sel < 0 ? 0 : sel + moves[ev.key]);
      else if (ev.key === "Home") page.select(0);
      else if (ev.key === "End") page.select(page.count() - 1);
      else if (ev.key === "Enter" && sel >= 0) detail.focus();
      else return;
      ev.preventDefault();
    });
    search.addEventListener("keydown", function (ev) {
      if (ev.key === "ArrowDown" || ev.key === "Enter") {
        clearTimeout(timer);
        page.filter("first");
        list.focus();
        ev.preventDefault();
      }
    });
    document.addEventListener("keydown", function (ev) {
      var typing = /^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement.tagName);
      if (ev.key === "/" && !typing) { search.focus(); search.select(); ev.preventDefault(); }
      else if (ev.key === "Escape") { list.focus(); ev.preventDefault(); }
    });
    document.addEventListener("DOMContentLoaded", page.show);
  }
