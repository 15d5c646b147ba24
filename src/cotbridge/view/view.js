/* cotbridge view: the per-question list of a run (or two side by side). Data comes from the JSON block; every
   string from the run reaches the page through textContent, never as markup. Rows render lazily, a chunk at a
   time as the reader scrolls, so a 10,000-question run opens at once. */
(function () {
  "use strict";
  var t0 = performance.now();
  var D = JSON.parse(document.getElementById("cb-data").textContent);
  var rows = D.rows, cols = D.columns, pairs = D.pairs || [];
  var CHUNK = 40, FOLD_CHARS = 420, FOLD_LINES = 6;
  var state = { list: [], shown: 0, current: -1 };
  var rowsEl = document.getElementById("rows"), moreEl = document.getElementById("more");
  var toolbar = document.getElementById("toolbar");
  window.cbTimings = { parse_ms: performance.now() - t0 };

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function add(parent) {
    for (var i = 1; i < arguments.length; i++) if (arguments[i]) parent.appendChild(arguments[i]);
    return parent;
  }
  function option(sel, value, text) {
    var o = el("option", null, text);
    o.value = value;
    sel.appendChild(o);
    return o;
  }

  /* ---- questions: derived fields ---- */
  rows.forEach(function (r, i) {
    r.i = i;
    r.hasOut = r.o.some(function (o) { return o; });
    var outs = r.o.filter(function (o) { return o; });
    r.nRight = outs.filter(function (o) { return o.c; }).length;
    r.nWrong = outs.length - r.nRight;
    r.tRight = (r.T || []).some(function (t) { return t.c; });
    var reasons = {};
    (r.T || []).forEach(function (t) {
      Object.keys(t.v || {}).forEach(function (m) { reasons[t.v[m]] = true; });
    });
    r.reasons = reasons;
    r.olen = 0;
    outs.forEach(function (o) { (o.S || []).forEach(function (s) { r.olen = Math.max(r.olen, (s.o || "").length); }); });
    r.tlen = 0;
    (r.T || []).forEach(function (t) { r.tlen = Math.max(r.tlen, (t.r || "").length + (t.th || "").length); });
  });
  function hay(r) {
    if (r.hay === undefined) {
      var parts = [r.q, r.g, r.id, r.t];
      r.o.forEach(function (o) {
        if (o) { parts.push(o.p); (o.S || []).forEach(function (s) { parts.push(s.o, s.th, s.a, s.p); }); }
      });
      (r.T || []).forEach(function (t) { parts.push(t.r, t.th, t.a, t.p); });
      r.hay = parts.filter(function (x) { return x !== undefined && x !== null; }).join("\n").toLowerCase();
    }
    return r.hay;
  }
  function flipped(r, p, kind) {
    var a = r.o[p.a], b = r.o[p.b];
    if (!a || !b) return false;
    return kind === "fixed" ? !a.c && b.c : a.c && !b.c;
  }

  /* ---- toolbar ---- */
  var controls = {};
  function labelled(text, input) {
    var l = el("label", null, text);
    l.appendChild(input);
    toolbar.appendChild(l);
    return input;
  }
  function count(pred) { return rows.filter(pred).length; }
  function buildToolbar() {
    var search = el("input");
    search.type = "search";
    search.id = "search";
    search.placeholder = "search questions and outputs  ( / )";
    controls.search = labelled("", search);

    var part = el("select");
    part.id = "f-part";
    // only the choices this page's data can meet (a teacher file has no outputs, an eval folder no teacher)
    var nTeach = count(function (r) { return r.T; });
    option(part, "", "all questions (" + rows.length + ")");
    if (cols.length) option(part, "eval", "evaluated (" + count(function (r) { return r.hasOut; }) + ")");
    if (nTeach) option(part, "teach", "with teacher samples (" + nTeach + ")");
    controls.part = labelled("show", part);
    part.parentNode.hidden = part.options.length === 1;

    controls.cols = cols.map(function (c, i) {
      var s = el("select");
      s.id = "f-col-" + i;
      s.dataset.col = i;
      option(s, "", "any");
      option(s, "ok", "✓ correct (" + count(function (r) { return r.o[i] && r.o[i].c; }) + ")");
      option(s, "bad", "✗ wrong (" + count(function (r) { return r.o[i] && !r.o[i].c; }) + ")");
      return labelled(c.label, s);
    });

    var special = el("select");
    special.id = "f-special";
    option(special, "", "any");
    if (cols.length > 1) {
      option(special, "disagree", "methods disagree (" + count(function (r) { return r.nRight && r.nWrong; }) + ")");
      option(special, "allwrong", "all wrong (" + count(function (r) { return r.hasOut && !r.nRight; }) + ")");
    }
    // teacher samples on the questions that were evaluated (a run teaches on train and evaluates on test: none)
    if (rows.some(function (r) { return r.T && r.hasOut; }))
      option(special, "trsw", "teacher right, student wrong (" + count(function (r) { return r.tRight && r.nWrong; }) + ")");
    pairs.forEach(function (p, j) {
      option(special, "fixed:" + j, p.method + ": wrong in A → right in B (" + p.fixed + ")");
      option(special, "broken:" + j, p.method + ": right in A → wrong in B (" + p.broken + ")");
    });
    controls.special = labelled("questions", special);
    special.parentNode.hidden = special.options.length === 1;  // nothing to choose here

    if ((D.verdicts || []).length) {
      var verdict = el("select");
      verdict.id = "f-verdict";
      option(verdict, "", "any");
      D.verdicts.forEach(function (v) {
        var n = count(function (r) { return r.reasons[v]; });
        option(verdict, v, (v === "kept" ? "a sample kept" : "a sample dropped: " + v) + " (" + n + ")");
      });
      controls.verdict = labelled("curation", verdict);
    }

    var sort = el("select");
    sort.id = "f-sort";
    option(sort, "", "in order");
    if (cols.length) option(sort, "olen", "longest output first");
    if (nTeach) option(sort, "tlen", "longest teacher rationale first");
    option(sort, "qlen", "longest question first");
    option(sort, "qshort", "shortest question first");
    controls.sort = labelled("sort", sort);

    add(toolbar, el("span", null, ""));
    var c = el("span", null, "");
    c.id = "count";
    toolbar.appendChild(c);
    toolbar.appendChild(el("div", "keys", "keys: j / k next / previous question · o open or fold it · / search · Esc leave the search · each # is a permalink"));
    toolbar.hidden = false;

    var timer = null;
    search.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { apply(true); }, 150);
    });
    [part, special, sort].concat(controls.cols, controls.verdict ? [controls.verdict] : []).forEach(function (s) {
      s.addEventListener("change", function () { apply(true); });
    });
  }

  /* ---- filtering ---- */
  function matches(r, f) {
    if (f.part === "eval" && !r.hasOut) return false;
    if (f.part === "teach" && !r.T) return false;
    for (var i = 0; i < f.cols.length; i++) {
      var want = f.cols[i];
      if (!want) continue;
      var o = r.o[i];
      if (!o || (want === "ok") !== o.c) return false;
    }
    if (f.special === "disagree" && !(r.nRight && r.nWrong)) return false;
    if (f.special === "allwrong" && !(r.hasOut && !r.nRight)) return false;
    if (f.special === "trsw" && !(r.tRight && r.nWrong)) return false;
    if (f.special.indexOf(":") > 0) {
      var kv = f.special.split(":");
      if (!flipped(r, pairs[+kv[1]], kv[0])) return false;
    }
    if (f.verdict && !r.reasons[f.verdict]) return false;
    if (f.q && hay(r).indexOf(f.q) < 0) return false;
    return true;
  }
  function current() {
    return {
      q: controls.search.value.trim().toLowerCase(),
      part: controls.part.value,
      cols: controls.cols.map(function (s) { return s.value; }),
      special: controls.special.value,
      verdict: controls.verdict ? controls.verdict.value : "",
      sort: controls.sort.value,
    };
  }
  var SORTS = {
    olen: function (a, b) { return b.olen - a.olen; },
    tlen: function (a, b) { return b.tlen - a.tlen; },
    qlen: function (a, b) { return b.q.length - a.q.length; },
    qshort: function (a, b) { return a.q.length - b.q.length; },
  };
  /* ---- the filters in the address: a filtered view can be reloaded and shared ---- */
  var FILTERS = ["part", "special", "verdict", "sort"];
  function hashParams() { return new URLSearchParams(location.hash.replace(/^#/, "")); }
  function writeHash(key) {
    var p = new URLSearchParams();
    if (controls.search.value.trim()) p.set("search", controls.search.value.trim());
    FILTERS.forEach(function (k) { if (controls[k] && controls[k].value) p.set(k, controls[k].value); });
    controls.cols.forEach(function (sel, i) { if (sel.value) p.set("c" + i, sel.value); });
    if (key) p.set("q", key);
    var h = p.toString();
    history.replaceState(null, "", h ? "#" + h : location.pathname + location.search);
  }
  /* The filters a link names, all of them: one it leaves out, or names with a value its control does not offer,
     is cleared. Whether the address names any (a link to a question alone leaves the reader's filters as they are). */
  function readFilters() {
    var p = hashParams();
    var keys = ["search"].concat(FILTERS, controls.cols.map(function (_, i) { return "c" + i; }));
    if (!keys.some(function (k) { return p.get(k) !== null; })) return false;
    function pick(sel, v) {
      if (sel) sel.value = v !== null && [].some.call(sel.options, function (o) { return o.value === v; }) ? v : "";
    }
    controls.search.value = p.get("search") || "";
    FILTERS.forEach(function (k) { pick(controls[k], p.get(k)); });
    controls.cols.forEach(function (sel, i) { pick(sel, p.get("c" + i)); });
    return true;
  }

  function apply(byReader) {
    var f = current();
    var list = rows.filter(function (r) { return matches(r, f); });
    if (SORTS[f.sort]) list.sort(function (a, b) { return SORTS[f.sort](a, b) || a.i - b.i; });
    state.list = list;
    state.q = f.q;
    state.shown = 0;
    state.current = -1;
    rowsEl.textContent = "";
    document.getElementById("count").textContent = list.length + " of " + rows.length + " questions";
    if (!list.length) rowsEl.appendChild(el("p", "empty", "No question matches these filters."));
    renderMore();
    if (byReader) writeHash(null);
  }

  /* ---- rendering ---- */
  function renderMore(upTo) {
    var end = Math.min(state.list.length, Math.max(state.shown + CHUNK, upTo === undefined ? 0 : upTo + 1));
    var frag = document.createDocumentFragment();
    for (var j = state.shown; j < end; j++) frag.appendChild(marked(renderRow(state.list[j], j), state.q));
    rowsEl.appendChild(frag);
    state.shown = end;
    if (!window.cbTimings.first_rows_ms) window.cbTimings.first_rows_ms = performance.now() - t0;
  }

  function foldable(text, cls) {
    if (!text) return el("div", "text empty-out " + (cls || ""), "(empty output)");
    var box = el("div", "text " + (cls || ""), text);
    var lines = (text.match(/\n/g) || []).length + 1;
    if (text.length <= FOLD_CHARS && lines <= FOLD_LINES) return box;
    box.classList.add("fold");
    var wrap = el("div");
    var btn = el("button", "more", "show all (" + text.length + " characters)");
    btn.type = "button";
    btn.addEventListener("click", function () { setFold(box, btn, !box.classList.contains("open")); });
    return add(wrap, box, btn);
  }
  /* An opened text's "fold" button goes above it, where the reader is (below a 300,000-character output it would be
     out of reach); a folded text's "show all" below it. */
  function setFold(box, btn, open) {
    box.classList.toggle("open", open);
    var n = box.textContent.length;
    btn.textContent = open ? "fold (" + n + " characters)" : "show all (" + n + " characters)";
    box.parentNode.insertBefore(btn, open ? box : box.nextSibling);
  }
  function thinkBlock(text) {
    var d = el("details", "think");
    add(d, el("summary", null, "thinking (" + text.split(/\s+/).length + " words)"), foldable(text));
    return d;
  }
  function scoresLine(sc) {
    if (!sc) return null;
    var parts = Object.keys(sc).map(function (k) {
      var v = sc[k];
      return k + " " + (typeof v === "number" ? v.toFixed(2) : String(v));
    });
    return parts.length ? el("div", "scores", "quality: " + parts.join(" · ")) : null;
  }
  function mark(ok) { return ok === true ? "✓" : ok === false ? "✗" : "?"; }
  function answerText(p) { return p === undefined || p === null ? "(no answer)" : String(p); }

  function sampleBody(s, diffAgainst) {
    var body = el("div", "body");
    if (s.th) body.appendChild(thinkBlock(s.th));
    if (diffAgainst !== undefined) body.appendChild(diffBlock(diffAgainst, s.o || ""));
    else body.appendChild(foldable(s.o || ""));
    if (s.a) body.appendChild(el("div", "ans", "answer step: " + s.a.trim()));
    add(body, scoresLine(s.sc));
    return body;
  }

  function outputBox(r, i) {
    var o = r.o[i], c = cols[i];
    if (!o) {
      var none = el("div", "out");
      add(none, add(el("div", "ohead"), el("span", "lbl", c.label), el("span", null, "not evaluated on this question")));
      return none;
    }
    var box = el("div", "out " + (o.c ? "ok" : "bad"));
    box.dataset.col = i;
    var head = el("div", "ohead");
    add(head, el("span", "lbl", mark(o.c) + " " + c.label), el("span", null, "answer: " + answerText(o.p)));
    var S = o.S || [];
    if (S.length > 1) head.appendChild(el("span", null, "vote of " + S.length + " samples, " + S.filter(function (s) { return s.c; }).length + " right"));
    if (S.length && S[0].f === "length") head.appendChild(el("span", null, "cut at the token limit"));
    if (o.f1 !== undefined) head.appendChild(el("span", null, "EM " + o.em + " · F1 " + o.f1));
    var other = partnerOf(i);
    var against = other !== null && r.o[other] && r.o[other].S && r.o[other].S.length && S.length && other < i
      ? (r.o[other].S[0].o || "") : undefined;
    if (against !== undefined && against !== (S[0].o || "")) head.appendChild(el("span", "diffnote", "words changed from A marked"));
    box.appendChild(head);
    if (S.length === 1) box.appendChild(sampleBody(S[0], against));
    else if (S.length > 1) {
      box.appendChild(sampleBody(S[0], against));
      var det = el("details", "samples");
      det.appendChild(el("summary", null, "all " + S.length + " samples"));
      S.forEach(function (s, k) {
        var one = el("div", "ts");
        add(one, add(el("div", "ohead"), el("span", "lbl", "#" + k + " " + mark(s.c)), el("span", null, "answer: " + answerText(s.p))), sampleBody(s));
        det.appendChild(one);
      });
      box.appendChild(det);
    }
    add(box, scoresLine(o.sc), promptBlock(r, i));
    return box;
  }
  /* The prompt the model was given: its column's template around the question (marked), or the whole text. */
  function promptBlock(r, i) {
    var o = r.o[i], t = o.pt !== undefined ? (cols[i].prompts || [])[o.pt] : null;
    var parts = t ? [t[0], r.q || "", t[1]] : o.pr !== undefined ? [o.pr, "", ""] : null;
    if (!parts) return null;
    var d = el("details", "prompt");
    d.appendChild(el("summary", null, "prompt (" + (parts[0].length + parts[1].length + parts[2].length) + " characters)"));
    var box = el("div", "text body");
    box.appendChild(document.createTextNode(parts[0]));
    if (parts[1]) {
      var q = el("span", "qpart", parts[1]);
      q.title = "the question";
      box.appendChild(q);
    }
    box.appendChild(document.createTextNode(parts[2]));
    d.appendChild(box);
    return d;
  }
  function partnerOf(i) {
    for (var j = 0; j < pairs.length; j++) {
      if (pairs[j].a === i) return pairs[j].b;
      if (pairs[j].b === i) return pairs[j].a;
    }
    return null;
  }

  /* word diff (LCS) of A's output against B's, shown in B's box: deleted words struck, inserted ones marked */
  function diffBlock(a, b) {
    var x = a.split(/(\s+)/), y = b.split(/(\s+)/);
    if (a === b || x.length * y.length > 4000000) return foldable(b);
    var n = x.length, m = y.length, L = [];
    for (var i = 0; i <= n; i++) L.push(new Uint16Array(m + 1));
    for (i = n - 1; i >= 0; i--)
      for (var j = m - 1; j >= 0; j--) L[i][j] = x[i] === y[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
    var box = el("div", "text");
    i = 0; j = 0;
    function put(cls, s) { box.appendChild(cls ? el("span", cls, s) : document.createTextNode(s)); }
    while (i < n || j < m) {
      if (i < n && j < m && x[i] === y[j]) { put(null, y[j]); i++; j++; }
      else if (i < n && (j >= m || L[i + 1][j] >= L[i][j + 1])) { put("d-del", x[i]); i++; }
      else { put("d-ins", y[j]); j++; }
    }
    box.title = "words of A's output struck, B's new words highlighted";
    var wrap = el("div");
    if (b.length > FOLD_CHARS || a.length > FOLD_CHARS) {
      box.classList.add("fold");
      var btn = el("button", "more", "show all (" + box.textContent.length + " characters)");
      btn.type = "button";
      btn.addEventListener("click", function () { setFold(box, btn, !box.classList.contains("open")); });
      return add(wrap, box, btn);
    }
    return add(wrap, box);
  }

  function teacherBlock(r) {
    var T = r.T;
    var det = el("details", "teacher");
    var right = T.filter(function (t) { return t.c; }).length;
    var kept = T.filter(function (t) { return Object.keys(t.v || {}).some(function (m) { return t.v[m] === "kept"; }); }).length;
    var hasVerdicts = T.some(function (t) { return t.v; });
    det.appendChild(el("summary", null, "teacher: " + T.length + " sample" + (T.length === 1 ? "" : "s") + ", " + right + " right" + (hasVerdicts ? ", " + kept + " kept for training" : "")));
    if (!r.hasOut) det.open = true;
    var list = el("div", "tlist");
    T.forEach(function (t) {
      var box = el("div", "ts");
      var head = el("div", "ohead");
      add(head, el("span", "lbl", mark(t.c) + " " + t.src + (t.n !== undefined ? " #" + t.n : "")), el("span", null, "answer: " + answerText(t.p)));
      if (t.f === "length") head.appendChild(el("span", null, "cut at the token limit"));
      Object.keys(t.v || {}).forEach(function (m) {
        var v = t.v[m];
        head.appendChild(el("span", "verdict " + (v === "kept" ? "kept" : "dropped"), m + ": " + (v === "kept" ? "kept" : "dropped (" + v + ")")));
      });
      box.appendChild(head);
      var body = el("div", "body");
      if (t.th) body.appendChild(thinkBlock(t.th));
      body.appendChild(foldable(t.r || ""));
      if (t.a) body.appendChild(el("div", "ans", "answer step: " + t.a.trim()));
      add(body, scoresLine(t.sc));
      box.appendChild(body);
      list.appendChild(box);
    });
    det.appendChild(list);
    return det;
  }

  function renderRow(r, pos) {
    var art = el("article", "q");
    art.id = "q-" + r.i;
    art.dataset.pos = pos;
    art.tabIndex = -1;
    var head = el("div", "qhead");
    var link = el("a", "perma", "#" + (r.i + 1));
    link.href = "#q=" + encodeURIComponent(r.k);
    link.title = "permalink to this question";
    add(head, link, el("span", "where", r.t + " · " + r.s + " · id " + r.id), el("span", "gold", "gold: " + r.g));
    var badges = el("span", "badges");
    r.o.forEach(function (o, i) {
      if (o) badges.appendChild(el("span", "badge " + (o.c ? "ok" : "bad"), mark(o.c) + " " + cols[i].label));
    });
    head.appendChild(badges);
    art.appendChild(head);
    art.appendChild(foldable(r.q || "", "qtext"));
    if (r.hasOut) {
      var outs = el("div", "outs");
      r.o.forEach(function (o, i) { outs.appendChild(outputBox(r, i)); });
      art.appendChild(outs);
    }
    if (r.T) art.appendChild(teacherBlock(r));
    return art;
  }

  /* The search's matches in a row's texts marked; a folded text or a closed block (thinking, samples, teacher)
     that holds one is opened, so that every match can be seen. */
  function marked(art, q) {
    if (!q) return art;
    art.querySelectorAll(".text, .where, .gold").forEach(function (box) {
      var walker = document.createTreeWalker(box, NodeFilter.SHOW_TEXT), nodes = [], n;
      while ((n = walker.nextNode())) nodes.push(n);
      var hit = false;
      nodes.forEach(function (node) {
        var text = node.nodeValue, lower = text.toLowerCase(), at = lower.indexOf(q);
        if (at < 0) return;
        hit = true;
        var frag = document.createDocumentFragment(), from = 0;
        for (; at >= 0; at = lower.indexOf(q, from)) {
          frag.appendChild(document.createTextNode(text.slice(from, at)));
          frag.appendChild(el("mark", "hit", text.slice(at, at + q.length)));
          from = at + q.length;
        }
        frag.appendChild(document.createTextNode(text.slice(from)));
        node.parentNode.replaceChild(frag, node);
      });
      if (!hit) return;
      if (box.classList.contains("fold")) {
        var btn = box.nextSibling;
        if (btn && btn.tagName === "BUTTON") setFold(box, btn, true);
      }
      for (var d = box.parentNode; d && d !== art; d = d.parentNode) if (d.tagName === "DETAILS") d.open = true;
    });
    return art;
  }

  /* The flip counts of two runs' summary: each selects its questions below. */
  function linkFlips() {
    document.querySelectorAll("#flips [data-flip]").forEach(function (b) {
      var j = pairs.findIndex(function (p) { return p.method === b.dataset.method; });
      if (j < 0) return;
      b.classList.add("pick");
      b.tabIndex = 0;
      b.setAttribute("role", "button");
      b.title = "show these questions";
      function pick() {
        resetFilters();
        controls.special.value = b.dataset.flip + ":" + j;
        apply(true);
        document.getElementById("questions-title").scrollIntoView({ block: "start" });
      }
      b.addEventListener("click", pick);
      b.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { pick(); e.preventDefault(); e.stopPropagation(); }
      });
    });
  }

  /* ---- lazy loading, permalinks, keys ---- */
  if ("IntersectionObserver" in window) {
    new IntersectionObserver(function (entries) {
      if (entries.some(function (e) { return e.isIntersecting; }) && state.shown < state.list.length) renderMore();
    }, { rootMargin: "1200px 0px" }).observe(moreEl);
  }
  window.addEventListener("scroll", function () {
    if (state.shown < state.list.length && moreEl.getBoundingClientRect().top < window.innerHeight + 1200) renderMore();
  }, { passive: true });

  function focusPos(pos) {
    if (pos < 0 || pos >= state.list.length) return;
    if (pos >= state.shown) renderMore(pos);
    var old = rowsEl.querySelector(".q.current");
    if (old) old.classList.remove("current");
    var node = document.getElementById("q-" + state.list[pos].i);
    node.classList.add("current");
    node.scrollIntoView({ block: "start" });
    settle(node, node.getBoundingClientRect().top, 0);
    node.focus({ preventScroll: true });
    state.current = pos;
    writeHash(state.list[pos].k);
  }
  /* Rows drawn for the first time near the one just scrolled to (content-visibility) take their real height in the
     next frames and push it away from the top: scroll again until it stays put, unless the reader has scrolled. */
  var readerScrolled = false;
  ["wheel", "touchstart", "keydown", "mousedown"].forEach(function (t) {
    window.addEventListener(t, function () { readerScrolled = true; }, { passive: true, capture: true });
  });
  function settle(node, top, frames) {
    readerScrolled = false;
    requestAnimationFrame(function check() {
      if (readerScrolled || frames++ > 30) return;
      if (Math.abs(node.getBoundingClientRect().top - top) > 1) node.scrollIntoView({ block: "start" });
      requestAnimationFrame(check);
    });
  }
  function openHash() {
    var key = hashParams().get("q");
    if (!key) return;
    var pos = state.list.findIndex(function (r) { return r.k === key; });
    if (pos < 0 && rows.some(function (r) { return r.k === key; })) {
      resetFilters();
      pos = state.list.findIndex(function (r) { return r.k === key; });
    }
    if (pos >= 0) focusPos(pos);
  }
  function resetFilters() {
    controls.search.value = "";
    [controls.part, controls.special, controls.sort].concat(controls.cols, controls.verdict ? [controls.verdict] : []).forEach(function (s) { s.value = ""; });
    apply();
  }
  function toggleRow(pos) {
    var node = document.getElementById("q-" + state.list[pos].i);
    var folds = node.querySelectorAll(".fold");
    var open = !(folds.length && folds[0].classList.contains("open"));
    folds.forEach(function (f) {
      var btn = f.nextSibling && f.nextSibling.tagName === "BUTTON" ? f.nextSibling : f.previousSibling;
      if (btn && btn.tagName === "BUTTON") setFold(f, btn, open);
      else f.classList.toggle("open", open);
    });
    node.querySelectorAll("details").forEach(function (d) { d.open = open; });
  }
  document.addEventListener("keydown", function (e) {
    var tag = (e.target && e.target.tagName) || "";
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") {
      if (e.key === "Escape") e.target.blur();
      return;
    }
    if (e.key === "Enter" && (tag === "BUTTON" || tag === "A" || tag === "SUMMARY")) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "j") { focusPos(Math.min(state.current + 1, state.list.length - 1)); e.preventDefault(); }
    else if (e.key === "k") { focusPos(Math.max(state.current - 1, 0)); e.preventDefault(); }
    else if ((e.key === "o" || e.key === "Enter") && state.current >= 0) { toggleRow(state.current); e.preventDefault(); }
    else if (e.key === "/") { controls.search.focus(); e.preventDefault(); }
  });
  window.addEventListener("hashchange", function () {
    if (readFilters()) apply();  // a link with filters; one with a question only keeps the reader's filters
    openHash();
  });

  buildToolbar();
  linkFlips();
  readFilters();
  apply();
  openHash();
  window.addEventListener("load", function () {
    // the summary's pictures may have moved the question a permalink opened: put it back at the top
    if (state.current >= 0 && hashParams().has("q") && window.scrollY > 0) {
      document.getElementById("q-" + state.list[state.current].i).scrollIntoView({ block: "start" });
    }
  });
  window.cbTimings.ready_ms = performance.now() - t0;
})();
