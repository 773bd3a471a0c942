// The feedback desk's script: the sign-in page, and the inbox composed
// from the forms plugin's API (submissions, their files, CSV exports) and
// the state plugin's (a versioned "handled" mark per submission, and the
// signed view token that puts the filters in a link).
"use strict";

const $ = (id) => document.getElementById(id);

// The API's refusal in its own words.
async function problem(response) {
  try {
    return (await response.json()).error.message;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

function signInPage() {
  const form = $("sign-in");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const response = await fetch("/v1/sessions", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify({ email: $("email").value, password: $("password").value }),
    });
    if (response.ok) {
      // Back to the view a shared link named, if any (a token, nothing else).
      const view = new URLSearchParams(location.search).get("view") ?? "";
      location.assign(/^[A-Za-z0-9._-]{1,512}$/.test(view) ? `/desk?view=${view}` : "/desk");
    } else {
      $("sign-in-error").textContent = await problem(response);
      $("password").focus();
    }
  });
}

function inboxPage() {
  const body = document.body.dataset;
  const FORM = body.form;
  const MARKS = body.marks;
  const PAGE = 25;
  // Pages of submissions read for one "Show more" while looking for rows
  // the status filter keeps.
  const MAX_PAGES = 10;
  const rows = document.querySelector("#inbox tbody");
  const labels = new Map();
  // Submission id → its mark: { etag, handled } (no entry: never marked).
  const marks = new Map();
  let view = { topic: "", status: "open", q: "" };
  let cursor = null;
  let shown = 0;
  // The first rows' frame, as a User Timing mark ("inbox-rows") that real
  // user monitoring and `make bench` read.
  let painted = false;

  const say = (text) => {
    $("inbox-status").textContent = text;
  };

  async function call(method, path, { json, headers = {} } = {}) {
    const init = { method, headers: { accept: "application/json", ...headers } };
    if (method !== "GET") init.headers["x-csrf-token"] = body.csrf;
    if (json !== undefined) {
      init.body = JSON.stringify(json);
      init.headers["content-type"] ??= "application/json";
    }
    return fetch(path, init);
  }

  // The form's topics, worded, for the filter and the rows.
  async function loadTopics() {
    const response = await call("GET", `/v1/forms/${FORM}?locale=en`);
    if (!response.ok) return;
    const shownForm = await response.json();
    const topic = shownForm.definition.fields.find((f) => f.name === "topic");
    for (const option of topic?.options ?? []) {
      const label = shownForm.texts[option.label] ?? option.value;
      labels.set(option.value, label);
      $("topic").append(new Option(label, option.value));
    }
  }

  async function openView() {
    const token = new URLSearchParams(location.search).get("view");
    if (!token) return;
    const response = await call("GET", `/v1/state/views/${encodeURIComponent(token)}`);
    if (response.ok) {
      const opened = await response.json();
      // Only what a view of this inbox holds, as the filters would set it.
      const { topic, status, q } = opened.kind === MARKS ? opened.view : {};
      if (typeof topic === "string" && topic.length <= 64) view.topic = topic;
      if (["open", "handled", ""].includes(status)) view.status = status;
      if (typeof q === "string" && q.length <= 200) view.q = q;
      showShareLink();
    } else {
      say(`This view link does not open: ${await problem(response)}`);
    }
  }

  function showControls() {
    $("topic").value = view.topic;
    $("status").value = view.status;
    $("q").value = view.q;
  }

  function showShareLink() {
    $("share").hidden = false;
    $("share-link").value = location.href;
  }

  // The marks of submissions from `first` to `last` (ids order by time).
  async function loadMarks(first, last) {
    let after = first.split("-")[0];
    for (;;) {
      const query = new URLSearchParams({ scope: "all", limit: "100", after });
      const response = await call("GET", `/v1/state/${MARKS}?${query}`);
      if (!response.ok) throw new Error(await problem(response));
      const page = await response.json();
      for (const item of page.items) marks.set(item.id, { etag: item.etag, handled: item.document.handled === true });
      if (!page.next || page.next >= last) return;
      after = page.next;
    }
  }

  const keeps = (submission) => {
    const handled = marks.get(submission.id)?.handled === true;
    return view.status === "" || (view.status === "handled") === handled;
  };

  function fileCell(submission) {
    const cell = document.createElement("td");
    cell.className = "files";
    for (const file of submission.attachments ?? []) {
      const base = `/v1/forms/${FORM}/submissions/${submission.id}/files/${file.id}`;
      const link = document.createElement("a");
      if (file.variants) {
        // The variants are re-encoded without metadata; the original is
        // what was sent, for download.
        link.href = `${base}/variants/large`;
        const image = document.createElement("img");
        image.alt = `Screenshot ${file.filename ?? ""}`.trim();
        image.src = `${base}/variants/thumb`;
        let tries = 0;
        image.addEventListener("error", () => {
          // A thumbnail still being made answers 503: try again shortly.
          if (++tries <= 15) setTimeout(() => (image.src = `${base}/variants/thumb?try=${tries}`), 2000);
        });
        link.append(image);
      } else {
        link.href = base;
        link.textContent = file.filename ?? file.id;
      }
      cell.append(link);
    }
    return cell;
  }

  function handledCell(submission) {
    const cell = document.createElement("td");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.id = `handled-${submission.id}`;
    box.checked = marks.get(submission.id)?.handled === true;
    const label = document.createElement("label");
    label.htmlFor = box.id;
    label.textContent = "Handled";
    const note = document.createElement("span");
    note.setAttribute("role", "status");
    box.addEventListener("change", () => mark(submission.id, box, note));
    cell.append(box, " ", label, " ", note);
    return cell;
  }

  function row(submission) {
    const tr = document.createElement("tr");
    tr.dataset.id = submission.id;
    tr.classList.toggle("handled", marks.get(submission.id)?.handled === true);
    const data = submission.data;
    const cell = (text, className) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (className) td.className = className;
      return td;
    };
    const received = new Date(submission.submitted_at * 1000);
    const time = document.createElement("time");
    time.dateTime = received.toISOString();
    time.textContent = received.toLocaleString("en");
    const when = document.createElement("td");
    when.append(time);
    const from = [data.name, data.email].filter(Boolean).join(" · ");
    tr.append(
      when,
      cell(`${from} (${submission.locale})`),
      cell(labels.get(data.topic) ?? data.topic ?? ""),
      cell(data.message ?? "", "message"),
      fileCell(submission),
      handledCell(submission),
    );
    return tr;
  }

  // Marks one submission handled or open: created if it was never marked,
  // else patched with If-Match; a conflict shows what is there now.
  async function mark(id, box, note) {
    const handled = box.checked;
    const known = marks.get(id);
    box.disabled = true;
    note.textContent = "";
    note.className = "";
    const response = known
      ? await call("PATCH", `/v1/state/${MARKS}/${id}`, {
          json: { handled },
          headers: { "content-type": "application/merge-patch+json", "if-match": known.etag },
        })
      : await call("PUT", `/v1/state/${MARKS}/${id}`, { json: { handled }, headers: { "if-none-match": "*" } });
    if (response.ok) {
      marks.set(id, { etag: response.headers.get("etag"), handled });
      box.closest("tr").classList.toggle("handled", handled);
    } else if (response.status === 412) {
      const current = await call("GET", `/v1/state/${MARKS}/${id}`);
      if (current.ok) {
        const stored = await current.json();
        marks.set(id, { etag: current.headers.get("etag"), handled: stored.handled === true });
      }
      const now = marks.get(id)?.handled === true;
      box.checked = now;
      box.closest("tr").classList.toggle("handled", now);
      note.className = "conflict";
      note.textContent = `Someone else changed this meanwhile: it is ${now ? "handled" : "open"}.`;
    } else {
      box.checked = !handled;
      note.className = "conflict";
      note.textContent = await problem(response);
    }
    box.disabled = false;
    box.focus();
  }

  async function more() {
    $("more").hidden = true;
    say("Loading…");
    let added = 0;
    try {
      for (let pages = 0; pages < MAX_PAGES && added < PAGE; pages += 1) {
        const query = new URLSearchParams({ limit: String(PAGE) });
        if (cursor) query.set("after", cursor);
        if (view.topic) query.set("field.topic", view.topic);
        if (view.q) query.set("q", view.q);
        const response = await call("GET", `/v1/forms/${FORM}/submissions?${query}`);
        if (!response.ok) throw new Error(await problem(response));
        const page = await response.json();
        if (page.items.length > 0) await loadMarks(page.items[0].id, page.items.at(-1).id);
        for (const submission of page.items.filter(keeps)) {
          rows.append(row(submission));
          added += 1;
        }
        if (added > 0 && !painted) {
          painted = true;
          requestAnimationFrame(() => performance.mark("inbox-rows"));
        }
        cursor = page.next;
        if (!cursor) break;
      }
      shown += added;
      $("more").hidden = !cursor;
      if (cursor) say(`${shown} shown so far; more may follow (Show more reads on).`);
      else say(shown === 0 ? "No submissions match." : `${shown} shown.`);
    } catch (e) {
      say(`The inbox could not be read: ${e.message}`);
    }
  }

  async function reload() {
    rows.replaceChildren();
    cursor = null;
    shown = 0;
    await more();
  }

  // A new filter: its view signed into a token that goes in the URL.
  $("filters").addEventListener("submit", async (event) => {
    event.preventDefault();
    view = { topic: $("topic").value, status: $("status").value, q: $("q").value.trim() };
    const response = await call("POST", "/v1/state/views", { json: { kind: MARKS, view } });
    if (response.ok) {
      const { token } = await response.json();
      history.replaceState(null, "", `/desk?view=${encodeURIComponent(token)}`);
      showShareLink();
    } else {
      say(`The view has no link: ${await problem(response)}`);
    }
    await reload();
  });

  $("copy-link").addEventListener("click", async () => {
    $("share-link").select();
    try {
      await navigator.clipboard.writeText($("share-link").value);
      say("The link is copied.");
    } catch {
      say("Select the link and copy it.");
    }
  });

  $("more").addEventListener("click", more);

  $("sign-out").addEventListener("click", async () => {
    await call("DELETE", "/v1/sessions/current");
    location.assign("/desk/sign-in");
  });

  // An export is a job: asked for, then its state read until it is done.
  $("export").addEventListener("click", async () => {
    const status = $("export-status");
    $("export").disabled = true;
    status.textContent = "Exporting…";
    try {
      const asked = await call("POST", `/v1/forms/${FORM}/exports`, { json: { format: "csv" } });
      if (!asked.ok) throw new Error(await problem(asked));
      const where = asked.headers.get("location");
      for (;;) {
        const response = await call("GET", where);
        if (!response.ok) throw new Error(await problem(response));
        const state = await response.json();
        if (state.state === "failed") throw new Error(state.reason);
        if (state.state === "done") {
          const link = document.createElement("a");
          link.href = state.download;
          link.textContent = `Download the CSV (${state.rows} rows)`;
          status.replaceChildren(link);
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    } catch (e) {
      status.textContent = `The export failed: ${e.message}`;
    }
    $("export").disabled = false;
  });

  (async () => {
    await Promise.all([loadTopics(), openView()]);
    showControls();
    await reload();
  })();
}

if (document.body.dataset.page === "sign-in") signInPage();
if (document.body.dataset.page === "inbox") inboxPage();
