/* The `vpd show` run report: a summary bar per run, a sortable virtual list of examples with
 * filters (each with its count), and the example on demand: each run side by side, the k
 * candidates of a synthesis run, and any candidate's full trace view (view.js draws it).
 * The list's data is #vpd-data; an example's candidates and traces are in its inert block
 * #vpd-ex-N, parsed only when it opens; thumbnails (#vpd-th-KEY) and images (#vpd-img-KEY)
 * are read from their blocks when needed. Every text from a run is untrusted: it only ever
 * reaches the page through text nodes and attribute values, never through innerHTML. */
  var RUNS = DATA.runs, EXAMPLES = DATA.examples, R = RUNS.length;
  var ROW = 44;
  var spacer = el("r-spacer"), detail = el("r-detail"), headRow = el("r-head");
  var search = el("r-q"), statusSel = el("r-status"), candSel = el("r-cand"), diffSel = el("r-diff");
  var count = el("r-count");
  var shown = [], sel = -1, hay = null;
  var sortKey = R > 1 ? "differ" : "n", sortDir = 1;
  var picked = null; // [run, candidate] whose trace view is open

  var OUTCOME = {
    verified: ["\u2713", "r-st-ok"], correct: ["\u2713", "r-st-ok"], partial: ["\u00bd", "r-st-fail"],
    wrong: ["\u2717", "r-st-bad"], failed: ["!", "r-st-fail"], "no-answer": ["\u2013", "r-st-none"],
    error: ["!", "r-st-fail"]
  };
  function mark(o) { return OUTCOME[o] || ["?", "r-st-none"]; }
  function pct(x) { return (x * 100).toFixed(1) + "%"; }
  function score(x) { return x === null || x === undefined ? "" : (Math.round(x * 100) / 100).toString(); }

  // -- the summary bar -----------------------------------------------------------------------
  function chart(at, examples) {
    var W = 220, H = 56, pad = 18, k = at.length, bar = (W - pad - 4) / k;
    var svg = s("svg", { "class": "vpd-chart", width: W, height: H + 14, viewBox: "0 0 " + W + " " + (H + 14), role: "img" });
    var title = s("title", {});
    title.textContent = "verified share at k = 1.." + k + ": " + at.map(function (c, j) {
      return "k=" + (j + 1) + " " + pct(c / examples);
    }).join(", ");
    svg.appendChild(title);
    at.forEach(function (c, j) {
      var share = examples ? c / examples : 0, hh = Math.max(1, share * (H - 12)), x = pad + j * bar;
      svg.appendChild(s("rect", { x: x + 2, y: H - hh, width: Math.max(1, bar - 4), height: hh, "class": "vpd-bar" }));
      var t = s("text", { x: x + bar / 2, y: H - hh - 2, "text-anchor": "middle" });
      t.textContent = Math.round(share * 100) + "%";
      svg.appendChild(t);
      var n = s("text", { x: x + bar / 2, y: H + 11, "text-anchor": "middle" });
      n.textContent = String(j + 1);
      svg.appendChild(n);
    });
    var label = s("text", { x: 0, y: H + 11 });
    label.textContent = "k";
    svg.appendChild(label);
    return svg;
  }

  function summary() {
    var box = el("r-summary");
    box.replaceChildren.apply(box, RUNS.map(function (run, r) {
      var sm = run.summary, facts = [h("span", { text: sm.examples + " examples" })];
      Object.keys(sm.outcomes).forEach(function (o) {
        var m = mark(o);
        facts.push(h("button", { "class": "r-pill", type: "button", "data-filter": r + ":" + o,
          title: "show only the examples " + run.name + " marks " + o },
          [h("span", { "class": m[1], text: m[0] + " " }), o + " " + sm.outcomes[o]]));
      });
      if (sm.accuracy !== null) facts.push(h("span", { text: (run.kind === "synthesis" ? "best score " : "score ") + pct(sm.accuracy) }));
      if (sm.seconds !== null && sm.seconds !== undefined) facts.push(h("span", { "class": "vpd-muted", text: seconds(sm.seconds) + " per question" }));
      if (sm.tokens !== null && sm.tokens !== undefined) facts.push(h("span", { "class": "vpd-muted", text: Math.round(sm.tokens) + " tokens per question" }));
      var kids = [h("h2", { title: run.path }, [run.name + " ", h("span", { "class": "vpd-muted", text: run.kind === "synthesis" ? "synthesis, k = " + sm.k : "evaluation" })]),
        h("div", { "class": "r-facts" }, facts)];
      if (run.kind === "synthesis") {
        var cands = Object.keys(sm.candidates).map(function (o) { return o + " " + sm.candidates[o]; }).join(" \u00b7 ");
        kids.push(h("div", { "class": "vpd-muted", text: "candidates: " + (cands || "none") }));
        kids.push(h("div", { "class": "vpd-muted r-key" }, ["squares, one per program in sample order: ",
          h("span", { "class": "vpd-cand vpd-c-correct" }), "correct \u00a0 ", h("span", { "class": "vpd-cand vpd-c-wrong" }),
          "wrong \u00a0 ", h("span", { "class": "vpd-cand" }), "an error \u00a0 ", h("span", { "class": "vpd-cand vpd-c-no-code" }),
          "no program or no answer \u00a0 ", h("span", { "class": "vpd-cand r-chosen" }), " outlined: the chosen one"]));
        if (sm.verified_at.length) {
          kids.push(h("div", { "class": "r-chart-box" }, [chart(sm.verified_at, sm.examples),
            h("span", { "class": "vpd-muted", text: "verified share with the first k programs" })]));
        }
      }
      return h("div", { "class": "r-run", "data-run": String(r) }, kids);
    }));
    box.addEventListener("click", function (ev) {
      var pill = ev.target.closest("[data-filter]");
      if (!pill) return;
      statusSel.value = statusSel.value === pill.getAttribute("data-filter") ? "all" : pill.getAttribute("data-filter");
      applyFilter("first");
    });
  }

  // -- filters, each option with its count -----------------------------------------------------
  function option(select, value, text) { select.appendChild(h("option", { value: value, text: text })); }

  function filters() {
    option(statusSel, "all", "all outcomes (" + EXAMPLES.length + ")");
    RUNS.forEach(function (run, r) {
      Object.keys(run.summary.outcomes).forEach(function (o) {
        option(statusSel, r + ":" + o, (R > 1 ? run.name + ": " : "") + o + " (" + run.summary.outcomes[o] + ")");
      });
    });
    var synth = RUNS.some(function (run) { return run.kind === "synthesis"; });
    candSel.hidden = !synth;
    option(candSel, "any", "any candidates");
    RUNS.forEach(function (run, r) {
      if (run.kind !== "synthesis") return;
      Object.keys(run.summary.candidates).forEach(function (o) {
        var n = EXAMPLES.filter(function (e) { return e.r[r] && e.r[r].c.indexOf(o) >= 0; }).length;
        option(candSel, r + ":" + o, (R > 1 ? run.name + ": " : "") + "a candidate " + o + " (" + n + " examples)");
      });
    });
    diffSel.hidden = R < 2;
    var differ = EXAMPLES.filter(function (e) { return e.d; }).length;
    option(diffSel, "all", "all examples (" + EXAMPLES.length + ")");
    option(diffSel, "differ", "runs differ (" + differ + ")");
    option(diffSel, "agree", "runs agree (" + (EXAMPLES.length - differ) + ")");
  }

  function haystack() {
    if (hay === null) {
      hay = EXAMPLES.map(function (e) {
        var parts = [e.id, e.q || "", e.refs.join(" ")];
        e.r.forEach(function (x) { if (x) parts.push(x.o, x.p || "", x.e || ""); });
        return parts.join("\n").toLowerCase();
      });
    }
    return hay;
  }

  function keep(e, i, terms) {
    var st = statusSel.value, cd = candSel.value, df = diffSel.value;
    if (st !== "all") {
      var p = st.split(":"), x = e.r[+p[0]];
      if (!x || x.o !== p.slice(1).join(":")) return false;
    }
    if (cd !== "any") {
      var q = cd.split(":"), y = e.r[+q[0]];
      if (!y || y.c.indexOf(q.slice(1).join(":")) < 0) return false;
    }
    if (df === "differ" && !e.d) return false;
    if (df === "agree" && e.d) return false;
    if (terms.length) {
      var text = haystack()[i];
      for (var j = 0; j < terms.length; j++) if (text.indexOf(terms[j]) < 0) return false;
    }
    return true;
  }

  function sortValue(i) {
    var e = EXAMPLES[i];
    if (sortKey === "n") return i;
    if (sortKey === "differ") return e.d ? 0 : 1;
    if (sortKey === "q") return (e.q || "").toLowerCase();
    if (sortKey === "refs") return e.refs.join(", ").toLowerCase();
    var x = e.r[+sortKey.slice(1)];
    return x ? (x.s === null ? -1 : x.s) : -2;
  }

  function applyFilter(mode) {
    var terms = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    var current = sel >= 0 ? shown[sel] : -1;
    shown = [];
    for (var i = 0; i < EXAMPLES.length; i++) if (keep(EXAMPLES[i], i, terms)) shown.push(i);
    var values = {};
    shown.forEach(function (i) { values[i] = sortValue(i); });
    shown.sort(function (a, b) {
      var va = values[a], vb = values[b];
      if (va < vb) return -sortDir;
      if (va > vb) return sortDir;
      return a - b;
    });
    count.textContent = "showing " + shown.length + " of " + EXAMPLES.length;
    spacer.style.height = shown.length * ROW + "px";
    document.querySelectorAll("#r-summary [data-filter]").forEach(function (b) {
      b.setAttribute("aria-pressed", b.getAttribute("data-filter") === statusSel.value ? "true" : "false");
    });
    headRow.querySelectorAll("[data-sort]").forEach(function (node) {
      var key = node.getAttribute("data-sort");
      if (key === sortKey) node.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
      else node.removeAttribute("aria-sort");
    });
    sel = shown.indexOf(current);
    if (sel < 0 && mode === "first" && shown.length) sel = 0;
    if (sel >= 0) select(sel); else { drawRows(); clearDetail(); saveHash(); }
  }

  // -- the list ------------------------------------------------------------------------------
  function header() {
    var cols = ["3em", "44px", "minmax(0, 3fr)"];
    var kids = [h("span", { "data-sort": "n", title: "sort by position", text: "#" }), h("span", { text: "" }),
      h("span", { "data-sort": "q", title: "sort by question", text: "question" })];
    RUNS.forEach(function (run, r) {
      cols.push(R > 1 ? "minmax(0, 1.6fr)" : "minmax(0, 2fr)");
      kids.push(h("span", { "data-sort": "r" + r, title: "sort by " + run.name + "'s score", text: run.name }));
    });
    cols.push("minmax(0, 1fr)");
    kids.push(h("span", { "data-sort": "refs", title: "sort by references", text: "references" }));
    if (R > 1) kids[1] = h("span", { "data-sort": "differ", title: "runs that differ first", text: "\u2260" });
    document.body.style.setProperty("--r-cols", cols.join(" "));
    headRow.replaceChildren.apply(headRow, kids);
    headRow.addEventListener("click", function (ev) {
      var node = ev.target.closest("[data-sort]");
      if (!node) return;
      var key = node.getAttribute("data-sort");
      sortDir = key === sortKey ? -sortDir : (key.charAt(0) === "r" && key !== "refs" ? -1 : 1);
      sortKey = key;
      applyFilter(false);
    });
  }

  function runCell(x) {
    if (!x) return h("span", { "class": "r-cell vpd-muted", text: "not in this run" });
    var m = mark(x.o), line = [h("span", { "class": m[1], title: x.o, text: m[0] + " " }), x.o + (x.s !== null ? " " + score(x.s) : "")];
    var strip = x.c.map(function (c, j) {
      return h("span", { "class": "vpd-cand vpd-c-" + c + (j === x.ch ? " r-chosen" : ""), title: "program " + (j + 1) + ": " + c });
    });
    var answer = h("span", { "class": "vpd-muted", title: x.p !== null ? x.p : (x.e || ""), text: " " + (x.p !== null ? x.p : (x.e || "\u2014")) });
    return h("span", { "class": "r-cell" }, [h("span", {}, line), h("span", {}, strip.concat([answer]))]);
  }

  function drawRows() {
    drawWindow(shown.length, ROW, sel, function (p) {
      var e = EXAMPLES[shown[p]], url = thumb(e.img);
      var kids = [h("span", { "class": "r-n", text: String(shown[p] + 1) }),
        url ? h("img", { "class": "r-thumb", src: url, alt: "" }) : h("span", { "class": "r-thumb", title: e.imgNote || "" }),
        h("span", { title: e.q || e.id, text: e.q || e.id })];
      e.r.forEach(function (x) { kids.push(runCell(x)); });
      kids.push(h("span", { "class": "vpd-muted", title: e.refs.join(", "), text: e.refs.join(", ") }));
      return kids;
    }, function (p) { return " r-erow" + (EXAMPLES[shown[p]].d ? " r-differ" : ""); });
  }

  function select(pos, focusDetail) {
    if (!shown.length) return;
    var changed = shown[Math.max(0, Math.min(shown.length - 1, pos))] !== (sel >= 0 ? shown[sel] : -1);
    sel = Math.max(0, Math.min(shown.length - 1, pos));
    scrollToRow(sel, ROW);
    drawRows();
    if (changed) picked = null;
    showDetail();
    saveHash();
    if (focusDetail) detail.focus();
  }

  // -- the example -----------------------------------------------------------------------------
  function clearDetail() {
    detail.replaceChildren(h("div", { "class": "r-empty",
      text: shown.length ? "Select an example (click, or \u2193 / j in the list)." : "No example matches the filters." }));
  }

  function block(i) {
    var node = document.getElementById("vpd-ex-" + i);
    if (!node || (document.readyState === "loading" && !node.nextSibling)) return undefined;
    return JSON.parse(node.textContent);
  }

  function candButton(r, c, chosen) {
    var m = mark(c.o === "correct" ? "correct" : c.o === "wrong" ? "wrong" : "failed");
    var kids = [h("b", { text: "program " + (c.i + 1) + " " }), h("span", { "class": m[1], text: m[0] + " " + c.o })];
    if (chosen) kids.push(h("span", { "class": "vpd-badge vpd-ok", text: "chosen" }));
    kids.push(h("br"));
    if (c.p !== null) kids.push(h("code", { text: c.p }), c.s !== null ? " score " + score(c.s) : "");
    if (c.e) kids.push(h("span", { "class": "r-why", title: c.e, text: c.e }));
    var pressed = picked && picked[0] === r && picked[1] === c.i;
    return h("button", { "class": "r-cand", type: "button", "data-run": String(r), "data-cand": String(c.i),
      "aria-pressed": pressed ? "true" : "false" }, kids);
  }

  function runBox(r, x, d, e) {
    var run = RUNS[r], kids = [h("h4", { text: run.name })];
    if (!x) return h("div", { "class": "r-runbox" }, kids.concat([h("div", { "class": "vpd-muted", text: "not in this run" })]));
    var m = mark(x.o);
    kids.push(h("div", { "class": "vpd-facts" }, [h("span", { "class": m[1], text: m[0] + " " + x.o }),
      h("span", {}, [h("b", { text: "Answer " }), h("code", { text: x.p !== null ? x.p : "\u2014" })]),
      x.s !== null ? h("span", { text: "score " + score(x.s) + (e.m ? " (" + e.m + ")" : "") }) : null]));
    if (d && d.error) kids.push(h("div", { "class": "vpd-error", text: d.error }));
    if (d && d.cands) {
      kids.push(h("div", { "class": "r-cands-grid" }, d.cands.map(function (c) { return candButton(r, c, c.i === x.ch); })));
    }
    if (d && d.trace) {
      var open = picked && picked[0] === r && picked[1] === -1;
      kids.push(h("button", { "class": "r-cand", type: "button", "data-run": String(r), "data-cand": "-1",
        "aria-pressed": open ? "true" : "false" }, [h("b", { text: "its program: what it did" })]));
    }
    if (d && d.program && !d.trace) kids.push(h("h4", { text: "Program" }), h("pre", { text: d.program }));
    if (d && d.explanation) kids.push(h("h4", { text: "Explanation" }), h("pre", { text: d.explanation }));
    if (d && d.votes && Object.keys(d.votes).length > 1) {
      kids.push(h("div", { "class": "vpd-muted", text: "votes: " + Object.keys(d.votes).map(function (k) { return k + " \u00d7" + d.votes[k]; }).join(", ") }));
    }
    return h("div", { "class": "r-runbox", "data-run": String(r) }, kids);
  }

  function showDetail() {
    var i = shown[sel], e = EXAMPLES[i], details = block(i);
    waiting = details === undefined;
    if (details === undefined) { detail.replaceChildren(h("div", { "class": "r-empty", text: "Loading\u2026" })); return; }
    if (picked === null) {
      for (var r = 0; r < R && picked === null; r++) {
        var x = e.r[r], d = details[r];
        if (!x || !d || !d.cands || !d.cands.length) continue;
        var best = d.cands.filter(function (c) { return c.i === x.ch; })[0] || d.cands.filter(function (c) { return c.t; })[0];
        if (best) picked = [r, best.i];
      }
      for (var q = 0; q < R && picked === null; q++) if (details[q] && details[q].trace) picked = [q, -1];
    }
    var kids = [h("h3", { text: e.q || e.id })];
    var refs = [h("b", { text: "References " })];
    e.refs.forEach(function (ref) { refs.push(h("code", { "class": "r-ref", text: ref }), " "); });
    kids.push(h("div", { "class": "vpd-facts" }, [h("span", {}, refs), h("span", { "class": "vpd-muted", text: "id " + e.id + (e.m ? " \u00b7 metric " + e.m : "") })]));
    if (e.qs && e.qs.length) {
      kids.push(h("div", { "class": "vpd-error", text: "The runs asked different questions under this id (runs of different data?): " + e.qs.join(" | ") }));
    } else if (R > 1) {
      kids.push(h("div", { "class": e.d ? "vpd-note" : "vpd-muted",
        text: e.d ? "The runs differ on this example (their answers or scores)." : "The runs give the same answer and score." }));
    }
    kids.push(h("div", { "class": "r-compare" }, e.r.map(function (x, r) { return runBox(r, x, details[r], e); })));
    var trace = null;
    if (picked && picked[1] === -1) {
      trace = (details[picked[0]] || {}).trace || null;
    } else if (picked) {
      var cands = (details[picked[0]] || {}).cands || [];
      var c = cands.filter(function (k) { return k.i === picked[1]; })[0];
      if (c && c.t) trace = c.t;
      if (c && !c.t) kids.push(h("h4", { text: "Program " + (c.i + 1) }), h("pre", { text: c.code || "(no program)" }));
    }
    if (trace) {
      kids.push(h("h4", { text: RUNS[picked[0]].name + (picked[1] < 0 ? "'s program" : ", program " + (picked[1] + 1)) + ": what it did" }));
      var tv = h("div", { "class": "r-trace" }, traceBody(trace));
      kids.push(tv);
    } else if (!e.r.some(function (x, r) { return details[r] && (details[r].cands || details[r].trace); })) {
      var img = image(e.img);
      if (img) kids.push(h("div", { "class": "r-example-image" }, [h("img", { src: img.url, alt: "the example's image" })]));
      else if (e.imgNote) kids.push(h("div", { "class": "vpd-note", text: "Image not available (" + e.imgNote + ")." }));
    }
    var view = h("div", { "class": "vpd", id: "r-view", "data-index": String(i) }, kids);
    wireLinks(view);
    view.addEventListener("click", function (ev) {
      var b = ev.target.closest(".r-cand");
      if (!b) return;
      picked = [+b.getAttribute("data-run"), +b.getAttribute("data-cand")];
      var top = detail.scrollTop;
      showDetail();
      detail.scrollTop = top;
    });
    detail.replaceChildren(view);
    detail.scrollTop = 0;
  }

  // -- state in the URL --------------------------------------------------------------------
  function saveHash() {
    writeHash([["q", search.value, ""], ["status", statusSel.value, "all"], ["cand", candSel.value, "any"],
      ["diff", diffSel.value, "all"], ["sort", (sortDir < 0 ? "-" : "") + sortKey, R > 1 ? "differ" : "n"],
      ["i", sel >= 0 ? String(shown[sel] + 1) : null, null]]);
  }

  function loadHash() {
    var p = new URLSearchParams(location.hash.slice(1));
    search.value = p.get("q") || "";
    chooseOption(statusSel, p.get("status"));
    chooseOption(candSel, p.get("cand"));
    chooseOption(diffSel, p.get("diff"));
    var sort = p.get("sort");
    if (sort) { sortDir = sort.charAt(0) === "-" ? -1 : 1; sortKey = sort.replace(/^-/, ""); }
    applyFilter(false);
    var i = parseInt(p.get("i") || "", 10) - 1;
    if (i >= 0 && shown.indexOf(i) >= 0) select(shown.indexOf(i));
  }

  // -- wiring ------------------------------------------------------------------------------
  summary();
  filters();
  header();
  wireList({
    size: EXAMPLES.length, rowHeight: ROW, selects: [statusSel, candSel, diffSel], filter: applyFilter, select: select,
    draw: drawRows, sel: function () { return sel; }, count: function () { return shown.length; },
    show: function () { drawRows(); if (waiting && sel >= 0) showDetail(); }
  });
  loadHash();
  if (sel < 0) clearDetail();
  document.body.setAttribute("data-ready", "true");
