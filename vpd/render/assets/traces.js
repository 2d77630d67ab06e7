/* The `vpd show` trace report: a virtual list of traces with filters, and the trace view on demand
 * (view.js draws it).
 * Data comes from the JSON block #vpd-data (written by vpd.render.report); each image is a
 * data URL in its own inert text/plain script block #vpd-img-KEY, after this script, read
 * only when a trace that uses it is shown. Every text from a trace is untrusted:
 * it only ever reaches the page through text nodes and attribute values, never through
 * innerHTML. */
  var TRACES = DATA.traces;
  var ROW = 30;
  var spacer = el("r-spacer"), detail = el("r-detail");
  var search = el("r-q"), statusSel = el("r-status"), kindSel = el("r-kind"), count = el("r-count");
  var shown = [];
  var sel = -1;
  var hay = null;
  var sortKey = "n", sortDir = 1;
  function status(t) {
    if (!t.v.ok) return "failed";
    if (t.c === true) return "correct";
    if (t.c === false) return "wrong";
    return "nolabel";
  }

  var MARKS = {
    correct: ["\u2713", "r-st-ok", "correct"],
    wrong: ["\u2717", "r-st-bad", "wrong answer"],
    failed: ["!", "r-st-fail", "failed"],
    nolabel: ["\u00b7", "r-st-none", "no label"]
  };

  // -- filtering ---------------------------------------------------------------------------
  function haystack() {
    if (hay === null) {
      hay = TRACES.map(function (t) {
        var e = t.v.error;
        return [t.id, t.q || "", t.a || "", t.l || "", e ? e.kind + " " + e.message : "",
          t.v.program_lines.join("\n"), t.r || ""].join("\n").toLowerCase();
      });
    }
    return hay;
  }

  function applyFilter(mode) {
    var terms = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    var st = statusSel.value, kind = kindSel.value;
    var texts = terms.length ? haystack() : null;
    var current = sel >= 0 ? shown[sel] : -1;
    shown = [];
    for (var i = 0; i < TRACES.length; i++) {
      var t = TRACES[i];
      var stt = status(t);
      if (st === "bad" ? (stt !== "wrong" && stt !== "failed") : (st !== "all" && stt !== st)) continue;
      if (kind === "none" ? t.k : (kind !== "any" && t.k !== kind)) continue;
      if (texts) {
        var text = texts[i], ok = true;
        for (var j = 0; j < terms.length && ok; j++) ok = text.indexOf(terms[j]) >= 0;
        if (!ok) continue;
      }
      shown.push(i);
    }
    if (sortKey !== "n" || sortDir !== 1) {
      var values = {};
      shown.forEach(function (i) { values[i] = sortValue(i); });
      shown.sort(function (a, b) {
        var va = values[a], vb = values[b];
        return va < vb ? -sortDir : va > vb ? sortDir : a - b;
      });
    }
    count.textContent = "showing " + shown.length + " of " + TRACES.length;
    spacer.style.height = shown.length * ROW + "px";
    document.querySelectorAll("#r-summary [data-status]").forEach(function (b) {
      b.setAttribute("aria-pressed", b.getAttribute("data-status") === statusSel.value ? "true" : "false");
    });
    document.querySelectorAll("#r-summary [data-kind]").forEach(function (b) {
      b.setAttribute("aria-pressed", b.getAttribute("data-kind") === kindSel.value ? "true" : "false");
    });
    document.querySelectorAll(".r-head [data-sort]").forEach(function (node) {
      if (node.getAttribute("data-sort") === sortKey) node.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
      else node.removeAttribute("aria-sort");
    });
    sel = shown.indexOf(current);
    if (sel < 0 && mode === "first" && shown.length) sel = 0;
    if (sel >= 0) {
      select(sel);
    } else {
      drawRows();
      clearDetail();
      saveHash();
    }
  }

  var ORDER = { correct: 0, nolabel: 1, wrong: 2, failed: 3 };
  function sortValue(i) {
    var t = TRACES[i];
    if (sortKey === "st") return ORDER[status(t)];
    if (sortKey === "q") return (t.q || t.id).toLowerCase();
    if (sortKey === "a") return t.a === null ? "\uffff" : t.a.toLowerCase();
    if (sortKey === "l") return t.l === null ? "\uffff" : t.l.toLowerCase();
    if (sortKey === "k") return t.k || "\uffff";
    return i;
  }

  // -- the summary bar and the counts on the filters -----------------------------------------
  function summary() {
    var counts = { correct: 0, wrong: 0, failed: 0, nolabel: 0 }, kinds = {}, clean = 0;
    TRACES.forEach(function (t) {
      counts[status(t)] += 1;
      if (t.k) kinds[t.k] = (kinds[t.k] || 0) + 1; else clean += 1;
    });
    var labels = { all: "all outcomes", correct: "correct", wrong: "wrong answer", failed: "failed (error)",
      bad: "wrong or failed", nolabel: "no label" };
    var n = { all: TRACES.length, bad: counts.wrong + counts.failed };
    [].forEach.call(statusSel.options, function (o) {
      var c = o.value in counts ? counts[o.value] : n[o.value];
      o.textContent = labels[o.value] + " (" + c + ")";
    });
    kindSel.options[0].textContent = "any error kind (" + TRACES.length + ")";
    kindSel.options[1].textContent = "no error (" + clean + ")";
    Object.keys(kinds).sort().forEach(function (k) {
      kindSel.appendChild(h("option", { value: k, text: k + " (" + kinds[k] + ")" }));
    });
    var pills = [h("span", { text: TRACES.length + " traces" })];
    ["correct", "wrong", "failed", "nolabel"].forEach(function (st) {
      if (!counts[st]) return;
      var m = MARKS[st];
      pills.push(h("button", { "class": "r-pill", type: "button", "data-status": st, title: "show only: " + m[2] },
        [h("span", { "class": m[1], text: m[0] + " " }), m[2] + " " + counts[st]]));
    });
    Object.keys(kinds).sort().forEach(function (k) {
      pills.push(h("button", { "class": "r-pill", type: "button", "data-kind": k, title: "show only errors of kind " + k },
        [h("span", { "class": "r-st-fail", text: "! " }), k + " " + kinds[k]]));
    });
    var key = h("span", { "class": "vpd-muted r-key" }, ["marks: "].concat(["correct", "wrong", "failed", "nolabel"].map(function (st) {
      var m = MARKS[st];
      return h("span", {}, [h("span", { "class": m[1], text: m[0] }), " " + m[2] + "  "]);
    })));
    var box = el("r-summary");
    box.replaceChildren(h("div", { "class": "r-facts" }, pills.concat([key])));
    box.addEventListener("click", function (ev) {
      var pill = ev.target.closest("[data-status], [data-kind]");
      if (!pill) return;
      if (pill.hasAttribute("data-status")) {
        var st = pill.getAttribute("data-status");
        statusSel.value = statusSel.value === st ? "all" : st;
      } else {
        var k = pill.getAttribute("data-kind");
        kindSel.value = kindSel.value === k ? "any" : k;
      }
      applyFilter("first");
    });
  }

  // -- the virtual list --------------------------------------------------------------------
  function drawRows() {
    drawWindow(shown.length, ROW, sel, function (p) {
      var t = TRACES[shown[p]], mark = MARKS[status(t)], url = thumb(t.img);
      return [
        h("span", { "class": "r-n", text: String(shown[p] + 1) }),
        h("span", { "class": mark[1], title: mark[2], text: mark[0] }),
        url ? h("img", { "class": "r-thumb r-thumb-s", src: url, alt: "" }) : h("span", {}),
        h("span", { title: t.q || t.id, text: t.q || t.id }),
        h("span", { title: t.a === null ? "" : t.a, text: t.a === null ? "\u2014" : t.a }),
        h("span", { title: t.l === null ? "" : t.l, text: t.l === null ? "" : t.l }),
        h("span", { "class": "r-st-fail", text: t.k })
      ];
    });
  }

  function select(pos, focusDetail) {
    if (!shown.length) return;
    sel = Math.max(0, Math.min(shown.length - 1, pos));
    scrollToRow(sel, ROW);
    drawRows();
    showDetail();
    saveHash();
    if (focusDetail) detail.focus();
  }

  // -- the trace view ----------------------------------------------------------------------
  function clearDetail() {
    detail.replaceChildren(h("div", { "class": "r-empty",
      text: shown.length ? "Select a trace (click, or \u2193 / j in the list)." : "No trace matches the filters." }));
  }

  function showDetail() {
    var t = TRACES[shown[sel]];
    waiting = false;
    var kids = [h("h3", { text: t.q || t.id })].concat(traceBody(t));
    var view = h("div", { "class": "vpd", id: "r-view", "data-index": String(shown[sel]) }, kids);
    wireLinks(view);
    detail.replaceChildren(view);
    detail.scrollTop = 0;
  }

  // -- state in the URL --------------------------------------------------------------------
  function saveHash() {
    writeHash([["q", search.value, ""], ["status", statusSel.value, "all"], ["kind", kindSel.value, "any"],
      ["sort", (sortDir < 0 ? "-" : "") + sortKey, "n"], ["i", sel >= 0 ? String(shown[sel] + 1) : null, null]]);
  }

  function loadHash() {
    var p = new URLSearchParams(location.hash.slice(1));
    search.value = p.get("q") || "";
    chooseOption(statusSel, p.get("status"));
    if (p.get("sort")) { sortDir = p.get("sort").charAt(0) === "-" ? -1 : 1; sortKey = p.get("sort").replace(/^-/, ""); }
    chooseOption(kindSel, p.get("kind"));
    applyFilter(false);
    var i = parseInt(p.get("i") || "", 10) - 1;
    if (i >= 0 && shown.indexOf(i) >= 0) select(shown.indexOf(i));
  }

  // -- wiring ------------------------------------------------------------------------------
  summary();
  document.querySelector(".r-head").addEventListener("click", function (ev) {
    var node = ev.target.closest("[data-sort]");
    if (!node) return;
    var key = node.getAttribute("data-sort");
    sortDir = key === sortKey ? -sortDir : 1;
    sortKey = key;
    applyFilter(false);
  });
  wireList({
    size: TRACES.length, rowHeight: ROW, selects: [statusSel, kindSel], filter: applyFilter, select: select,
    draw: drawRows, sel: function () { return sel; }, count: function () { return shown.length; },
    show: function () { drawRows(); if (waiting && sel >= 0) showDetail(); }  // the thumbnails' blocks are parsed now
  });
  loadHash();
  if (sel < 0) clearDetail();
  document.body.setAttribute("data-ready", "true");
