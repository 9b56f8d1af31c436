// realtalk report explorer: builds the leaderboard and the question list from the JSON in #report-data
// (and the question list's parts in report-data/, when it has several).
// Every text from the runs or chats goes through textContent, never innerHTML.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const board = DATA.board;
  const PAGE = 50;
  let shown = PAGE;

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v;
      else if (k === "cls") node.className = v;
      else node.setAttribute(k, v);
    }
    for (const c of children || []) node.append(c);
    return node;
  }
  const fmt = (v, d = 3) => (v === null || v === undefined ? "-" : Number(v).toFixed(d));
  const ciText = (s) => (s && s.low !== null && s.low !== undefined ? `[${fmt(s.low)}, ${fmt(s.high)}]` : "");
  const pText = (p) => (p === null || p === undefined ? "-" : p < 0.001 ? "<0.001" : p.toFixed(3));

  // --- leaderboard -------------------------------------------------------------------------------
  const metricSelect = document.getElementById("board-metric");
  for (const [m, name] of Object.entries(board.metrics)) metricSelect.append(el("option", { value: m, text: name }));
  let sortColumn = "overall", sortAsc = false;

  // One table per group of comparable runs (same items, dataset and judge), each ranked on its own.
  function renderLeaderboard() {
    const metric = metricSelect.value;
    const first = document.getElementById("leaderboard");
    document.querySelectorAll("#leaderboards table.group").forEach((t) => t.remove());
    const groups = board.groups && board.groups.length ? board.groups : [{ id: "", runs: board.runs.map((r) => r.id) }];
    groups.forEach((g, i) => {
      const table = i === 0 ? first : el("table", { cls: "group", id: "leaderboard-" + g.id });
      if (i > 0) document.getElementById("leaderboards").append(table);
      renderGroup(table, g, metric, groups.length > 1);
    });
    renderComparisons(metric);
  }

  function groupText(g) {
    const items = g.items ? `${g.items.count} items (${g.items.hash})` : "";
    let text = `Group ${g.id}: dataset ${g.dataset}, ${items}, judge ${g.judge || "none"}`;
    const fa = g.judge_audit && g.judge_audit.false_accept;
    if (fa && fa.rate !== null) text += ` (judge false-accept rate ${fmt(fa.rate)} ${ciText(fa)}, audit ${g.judge_audit.path})`;
    return g.why ? `${text}; ${g.why}` : text;
  }

  function renderGroup(table, group, metric, several) {
    table.replaceChildren();
    if (several || group.judge_audit) table.append(el("caption", { text: groupText(group) }));
    const members = new Set(group.runs);
    const columns = ["run", "model", "context", ...board.categories, "cost", "tokens"];
    const head = el("tr");
    for (const c of columns) {
      const th = el("th", { text: c, "data-column": c, cls: ["run", "model", "context"].includes(c) ? "" : "num" });
      if (c === sortColumn) th.classList.add("sorted", ...(sortAsc ? ["asc"] : []));
      th.addEventListener("click", () => {
        sortAsc = sortColumn === c ? !sortAsc : ["run", "model", "context"].includes(c);
        sortColumn = c;
        renderLeaderboard();
      });
      head.append(th);
    }
    table.append(el("thead", {}, [head]));
    const value = (r, c) => {
      if (c === "run") return r.id;
      if (c === "model") return r.model;
      if (c === "context") return r.context;
      if (c === "cost") return r.cost_usd;
      if (c === "tokens") return r.prompt_tokens + r.completion_tokens;
      const s = (r.scores[metric] || {})[c];
      return s && s.mean !== null ? s.mean : -Infinity;
    };
    const rows = board.runs.filter((r) => members.has(r.id)).sort((a, b) => {
      const x = value(a, sortColumn), y = value(b, sortColumn);
      const order = typeof x === "string" ? x.localeCompare(y) : x - y;
      return sortAsc ? order : -order;
    });
    const body = el("tbody");
    for (const r of rows) {
      const tr = el("tr", { "data-run": r.id }, [
        el("td", { text: r.id }), el("td", { text: r.model }), el("td", { text: r.context }),
      ]);
      for (const c of board.categories) {
        const s = (r.scores[metric] || {})[c];
        tr.append(el("td", { cls: "num" }, [
          el("span", { text: fmt(s && s.mean) }), el("br"), el("span", { cls: "ci", text: ciText(s) }),
        ]));
      }
      tr.append(el("td", { cls: "num", text: "$" + fmt(r.cost_usd, 4) }));
      tr.append(el("td", { cls: "num", text: String(r.prompt_tokens + r.completion_tokens) }));
      body.append(tr);
    }
    table.append(body);
  }

  // Published results written down by the user (`--reference`): beside the runs, marked, never ranked.
  function renderReferences() {
    const box = document.getElementById("references");
    const refs = board.references || [];
    if (!refs.length) return;
    box.append(el("h3", { text: "Published results: written down from their sources, not measured here, not ranked" }));
    const table = el("table", { cls: "published" });
    table.append(el("thead", {}, [el("tr", {}, ["published result", "score", ...board.categories, "other", "source"].map(
      (h) => el("th", { text: h })))]));
    const body = el("tbody");
    for (const r of refs) {
      for (const metric of Object.keys(r.scores)) {
        const cells = board.categories.map((c) => el("td", { cls: "num", text: fmt((r.columns[metric] || {})[c]) }));
        const other = Object.entries(r.other[metric] || {}).map(([k, v]) => `${k} ${fmt(v)}`).join("; ") || "-";
        body.append(el("tr", {}, [el("td", { text: `${r.id} † ${r.system} (${r.dataset}, ${r.protocol}, judge ${r.judge})` }),
          el("td", { text: metric }), ...cells, el("td", { text: other }), el("td", { text: r.source })]));
      }
    }
    table.append(body);
    box.append(table);
  }

  function renderRuns() {
    const table = document.getElementById("runs");
    const head = ["run", "model", "context", "memory", "judge", "answered", "failed", "wall time", "directory"];
    table.append(el("thead", {}, [el("tr", {}, head.map((h) => el("th", { text: h })))]));
    const body = el("tbody");
    for (const r of board.runs) {
      body.append(el("tr", {}, [
        r.id, r.model, r.context, r.memory || "-", r.judge || "-",
        String(r.answered) + (r.complete ? "" : " (incomplete)"), String(r.failed),
        r.wall_time_s === null || r.wall_time_s === undefined ? "-" : r.wall_time_s.toFixed(1) + " s", r.path,
      ].map((t) => el("td", { text: t }))));
    }
    table.append(body);
  }

  function renderComparisons(metric) {
    const box = document.getElementById("comparisons");
    box.replaceChildren();
    if (!board.comparisons.length) return;
    box.append(el("h3", { text: `Paired differences (${board.metrics[metric]}, b - a on common items)` }));
    const table = el("table");
    table.append(el("thead", {}, [el("tr", {}, ["b - a", "common", ...board.categories].map(
      (h) => el("th", { text: h, cls: h === "b - a" ? "" : "num" })))]));
    const body = el("tbody");
    for (const comp of board.comparisons) {
      const tr = el("tr", {}, [el("td", { text: `${comp.b} - ${comp.a}` }), el("td", { cls: "num", text: String(comp.common) })]);
      for (const c of board.categories) {
        const d = (comp.differences[metric] || {})[c];
        if (!d || d.mean === null) { tr.append(el("td", { cls: "num", text: "-" })); continue; }
        tr.append(el("td", { cls: "num " + (d.significant ? "sig" : "ns"), title: `n=${d.n}` }, [
          el("span", { text: (d.mean >= 0 ? "+" : "") + fmt(d.mean) + (d.significant ? "" : " n.s.") }), el("br"),
          el("span", { cls: "ci", text: `${ciText(d)} p=${pText(d.p)}` }),
        ]));
      }
      body.append(tr);
    }
    table.append(body);
    box.append(table);
    box.append(el("p", { cls: "hint", text: `n.s.: p >= ${board.settings.alpha} (sign-flip permutation test, no multiple-comparison correction).` }));
  }

  // --- question explorer -------------------------------------------------------------------------
  // The question list comes in parts (DATA.parts): in the page itself, with the messages its questions cite, or
  // as report-data/part-NNNN.js files beside it, with each chat's messages in report-data/chat-NNNN.js
  // (DATA.chat_files), loaded when a page of questions or a search needs them: a <script>, which browsers run
  // for a page opened from file://, where they refuse fetch(). A file calls realtalkReportPart(token, name, data).
  const $ = (id) => document.getElementById(id);
  const parts = DATA.parts;
  const total = DATA.total;
  const starts = [];
  parts.reduce((n, p) => { starts.push(n); return n + p.count; }, 0);
  const KEEP = 40;  // parts kept in memory, the most recently used
  const cache = new Map();
  const chatMessages = new Map();  // chat -> its messages, once loaded
  const waiting = new Map();  // file name -> what its script handed over
  const messagesOf = new WeakMap();  // question -> the messages of its part (a page's own part)

  function accept(i, data) {
    if (data.messages && Object.keys(data.messages).length) for (const q of data.questions) messagesOf.set(q, data.messages);
    cache.set(i, data);
    while (cache.size > KEEP) cache.delete(cache.keys().next().value);
  }
  parts.forEach((p, i) => { if (p.data) accept(i, p.data); });

  window.realtalkReportPart = function (token, name, data) {
    const w = waiting.get(name);
    // A file of another report (left in report-data/, or copied there) is not taken for this one's.
    if (token !== DATA.token || !w || !data || typeof data !== "object") return;
    w.data = data;
  };

  // The data a file hands over, once its script has run.
  function loadFile(file) {
    const name = file.replace(/^.*\//, "").replace(/\.js$/, "");
    if (waiting.has(name)) return waiting.get(name).promise;
    const w = {};
    w.promise = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      const done = (error) => {
        script.remove();
        waiting.delete(name);
        if (error || !w.data) reject(new Error(error || `${file} is not a file of this report: make the report again`));
        else resolve(w.data);
      };
      script.onload = () => done(null);
      script.onerror = () => done(`cannot load ${file}: keep the report-data folder beside report.html`);
      script.src = file;
      document.head.append(script);
    });
    waiting.set(name, w);
    return w.promise;
  }

  // A part's data, or a promise of it when it has to be loaded first.
  function load(i) {
    if (cache.has(i)) {
      const data = cache.get(i);
      cache.delete(i);
      cache.set(i, data);
      return data;
    }
    return loadFile(parts[i].file).then((data) => {
      if (!Array.isArray(data.questions)) throw new Error(`${parts[i].file} is not a part of this report`);
      if (!cache.has(i)) accept(i, data);
      return cache.get(i);
    });
  }

  // The messages of the chats of these questions, for those kept in files of their own.
  async function loadChats(questions) {
    const files = DATA.chat_files || {};
    const wanted = [...new Set(questions.map((q) => q.chat))].filter((c) => files[c] && !chatMessages.has(c));
    await Promise.all(wanted.map((c) => loadFile(files[c]).then((data) => {
      chatMessages.set(c, data && data.chat === c && data.messages ? data.messages : {});
    })));
  }

  function partOf(index) {
    let lo = 0, hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid] <= index) lo = mid; else hi = mid - 1;
    }
    return lo;
  }

  for (const c of DATA.chats) $("f-chat").append(el("option", { value: c, text: c }));
  for (const c of board.categories.filter((c) => c !== "overall")) $("f-category").append(el("option", { value: c, text: c }));
  for (const r of DATA.runs) {
    for (const id of ["f-run", "f-wrong", "f-right"]) $(id).append(el("option", { value: r.id, text: `${r.id}: ${r.label}` }));
  }

  function number(id) {
    const v = $(id).value;
    return v === "" ? null : Number(v);
  }

  function readFilters() {
    const f = {
      chat: $("f-chat").value, cat: $("f-category").value, run: $("f-run").value, below: number("f-below"),
      wrong: $("f-wrong").value, right: $("f-right").value, text: $("f-text").value.trim().toLowerCase(),
      t: number("f-threshold") ?? 0.5, by: $("f-by").value,  // right: F1 or judge score >= t
    };
    f.any = Boolean(f.chat || f.cat || f.run || f.below !== null || f.wrong || f.right || f.text);
    return f;
  }

  function matches(q, f) {
    if (f.chat && q.chat !== f.chat) return false;
    if (f.cat && q.category !== f.cat) return false;
    if (f.run && !q.runs[f.run]) return false;
    if (f.below !== null) {
      const ids = f.run ? [f.run] : Object.keys(q.runs);
      if (!ids.some((id) => q.runs[id] && q.runs[id].f1 !== null && q.runs[id].f1 < f.below)) return false;
    }
    const score = (id) => (q.runs[id] && q.runs[id][f.by] !== null && q.runs[id][f.by] !== undefined ? q.runs[id][f.by] : null);
    if (f.wrong && !(score(f.wrong) !== null && score(f.wrong) < f.t)) return false;
    if (f.right && !(score(f.right) !== null && score(f.right) >= f.t)) return false;
    if (f.text) {
      const hay = [q.question, q.gold || "", ...Object.values(q.runs).map((a) => a.prediction || "")].join("\n").toLowerCase();
      if (!hay.includes(f.text)) return false;
    }
    return true;
  }

  function messageNode(q, id, extra) {
    const m = ((messagesOf.get(q) || {})[q.chat] || chatMessages.get(q.chat) || {})[id] || null;
    const li = el("li", { "data-dia-id": id });
    li.append(el("code", { text: id }), " ");
    for (const x of extra || []) li.append(x, " ");
    if (!m) {
      const known = DATA.chats_found.includes(q.chat);
      li.append(el("span", { cls: "dangling", text: known ? "dangling id: no such message in the chat" : "chat file not available" }));
      return li;
    }
    li.append(el("span", { cls: "speaker", text: m[0] }), " ", el("span", { cls: "date", text: m[1] }), ": ",
      el("span", { cls: "text", text: m[2] }));
    return li;
  }

  function questionNode(q) {
    const box = el("article", { cls: "question", "data-chat": q.chat, "data-qa": String(q.qa) });
    box.append(el("div", { cls: "meta", text: `${q.chat} · question ${q.qa} · ${q.category}` }));
    box.append(el("div", { cls: "q", text: q.question }));
    box.append(el("div", { cls: "gold" }, [el("b", { text: "gold: " }), q.gold === null ? "-" : String(q.gold)]));
    if (q.corrected) {
      box.append(el("div", { cls: "gold corrected" }, [el("b", { text: `corrected gold (errata ${q.corrected.id}): ` }),
        String(q.corrected.gold)]));
    }
    const table = el("table", { cls: "answers" });
    table.append(el("tr", {}, ["run", "prediction", "F1", "date F1", "judge"].map((h) => el("th", { text: h }))));
    for (const r of DATA.runs) {
      const a = q.runs[r.id];
      if (!a) { table.append(el("tr", {}, [el("td", { text: r.id }), el("td", { text: "(not answered in this run)", cls: "ns" })])); continue; }
      table.append(el("tr", { "data-run": r.id }, [
        el("td", { text: r.id }), el("td", { cls: "pred", text: a.prediction || "" }),
        el("td", { cls: "num", text: fmt(a.f1, 2) }), el("td", { cls: "num", text: fmt(a.f1_date, 2) }),
        el("td", { cls: a.judges ? "num judges" : "num", text: a.judges
          ? Object.entries(a.judges).map(([k, v]) => `${fmt(v, 2)} ${k}`).join("\n") : fmt(a.judge, 2) }),
      ]));
    }
    box.append(table);
    const withRetrieval = DATA.runs.filter((r) => q.runs[r.id] && q.runs[r.id].retrieved);
    const ev = el("ol", { cls: "evidence" });
    for (const id of q.evidence) {
      const marks = withRetrieval.map((r) => {
        const hit = q.runs[r.id].retrieved.includes(id);
        return el("span", { cls: hit ? "hit" : "miss", title: `retrieval in run ${r.id}`, text: `${r.id}:${hit ? "hit" : "miss"}` });
      });
      ev.append(messageNode(q, id, marks));
    }
    box.append(el("div", {}, [el("b", { text: `evidence (${q.evidence.length})` })]));
    if (q.evidence.length) box.append(ev);
    for (const r of withRetrieval) {
      const ids = q.runs[r.id].retrieved;
      const list = el("ol", { cls: "evidence" }, ids.map((id) => messageNode(q, id, q.evidence.includes(id) ? [el("span", { cls: "hit", text: "evidence" })] : [])));
      box.append(el("details", {}, [el("summary", { text: `what retrieval put in the prompt for run ${r.id} (${ids.length} messages)` }), list]));
    }
    return box;
  }

  // The search in progress: which questions match (indexes into the whole list), how far it has got.
  let search = { generation: 0, hits: null, searched: 0, done: true, failed: null };


  const matched = () => (search.hits === null ? total : search.hits.length);

  function countText() {
    if (search.failed) return search.failed;
    if (!search.done) return `searching: ${matched()} matching questions in the first ${search.searched} of ${total}`;
    return `${matched()} of ${total} questions match` + (matched() > shown ? `; showing the first ${shown}` : "");
  }

  // Show the first `shown` matches (loading their parts when needed); false when a newer search took over.
  async function showPage(generation) {
    const indexes = search.hits === null
      ? Array.from({ length: Math.min(shown, total) }, (_, i) => i) : search.hits.slice(0, shown);
    const questions = [];
    for (const index of indexes) {
      const i = partOf(index);
      let data = load(i);
      if (data instanceof Promise) {
        try { data = await data; } catch (e) { if (generation === search.generation) fail(e); return false; }
        if (generation !== search.generation) return false;
      }
      questions.push(data.questions[index - starts[i]]);
    }
    if (Object.keys(DATA.chat_files || {}).length) {
      try { await loadChats(questions); } catch (e) { if (generation === search.generation) fail(e); return false; }
      if (generation !== search.generation) return false;
    }
    $("questions").replaceChildren(...questions.map(questionNode));
    $("count").textContent = countText();
    $("more").hidden = matched() <= shown;
    return true;
  }

  function fail(error) {
    search.failed = error.message;
    search.done = true;
    $("count").textContent = countText();
  }

  async function renderQuestions() {
    const f = readFilters();
    const generation = search.generation + 1;
    search = { generation, hits: f.any ? [] : null, searched: f.any ? 0 : total, done: !f.any, failed: null };
    if (!f.any) return showPage(generation);
    $("count").textContent = countText();  // "searching": the count of an earlier search is no longer true
    let drawn = -1;
    for (let i = 0; i < parts.length; i++) {
      let data = load(i);
      if (data instanceof Promise) {
        try { data = await data; } catch (e) { if (generation === search.generation) fail(e); return; }
        if (generation !== search.generation) return;
      }
      data.questions.forEach((q, j) => { if (matches(q, f)) search.hits.push(starts[i] + j); });
      search.searched += data.questions.length;
      search.done = i === parts.length - 1;
      if (search.done || (drawn < shown && search.hits.length > drawn)) {
        drawn = search.hits.length;
        if (!(await showPage(generation))) return;
      } else {
        $("count").textContent = countText();
      }
    }
  }

  $("filters").addEventListener("input", () => { shown = PAGE; renderQuestions(); });
  $("more").addEventListener("click", () => { shown += PAGE; showPage(search.generation); });
  metricSelect.addEventListener("change", renderLeaderboard);
  const s = board.settings;
  $("settings").textContent = `${board.runs.length} ${board.kind} runs; ${s.resamples} bootstrap resamples, seed ${s.seed}; ` +
    `${board.questions.common} of ${board.questions.union} items answered by every run.`;
  renderLeaderboard();
  renderRuns();
  renderReferences();
  if (board.kind === "probe") renderQuestions();
  else $("explorer").hidden = true;
})();
