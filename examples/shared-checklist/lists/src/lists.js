// The shared checklist's script. A checklist is a state document
// ({title, items: {id: item}, order: [ids], video?}); items are edited with
// the forms plugin's `checklist-item` definition (its labels, and its
// checks before anything is sent); changes from others arrive over the
// document's change stream. Every write names the version it was made
// from (If-Match): when someone else changed the same item meanwhile, the
// person sees both versions and chooses, and nothing is lost.
"use strict";

const $ = (id) => document.getElementById(id);
const body = document.body.dataset;
const ITEM_FORM = "checklist-item";
const KIND = "checklists";

async function problem(response) {
  try {
    return (await response.json()).error.message;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

function call(method, path, { json, headers = {} } = {}) {
  const init = { method, headers: { accept: "application/json", ...headers } };
  if (method !== "GET" && body.csrf) init.headers["x-csrf-token"] = body.csrf;
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["content-type"] ??= "application/json";
  }
  return fetch(path, init);
}

// A random id for a new item: 16 characters of A-Z a-z 0-9.
function newId() {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => alphabet[b % alphabet.length]).join("");
}

function signInPage() {
  $("sign-in").addEventListener("submit", async (event) => {
    event.preventDefault();
    const response = await call("POST", "/v1/sessions", {
      json: { email: $("email").value, password: $("password").value },
    });
    if (response.ok) {
      // Back to the checklist that sent the person here, never elsewhere.
      const next = new URLSearchParams(location.search).get("next") ?? "";
      location.assign(/^\/lists\/[A-Za-z0-9_-]+$/.test(next) ? next : "/lists");
    } else {
      $("sign-in-error").textContent = await problem(response);
      $("password").focus();
    }
  });
}

function signOut() {
  $("sign-out")?.addEventListener("click", async () => {
    await call("DELETE", "/v1/sessions/current");
    location.assign("/lists/sign-in");
  });
}

async function homePage() {
  signOut();
  const response = await call("GET", `/v1/state/${KIND}?limit=100`);
  if (response.ok) {
    for (const item of (await response.json()).items) {
      const entry = document.createElement("li");
      const link = document.createElement("a");
      link.href = `/lists/${item.id}`;
      link.textContent = item.document.title;
      entry.append(link);
      $("lists").append(entry);
    }
  }
  $("new-list").addEventListener("submit", async (event) => {
    event.preventDefault();
    const made = await call("POST", `/v1/state/${KIND}`, {
      json: { title: $("new-title").value.trim(), items: {}, order: [] },
    });
    if (made.ok) {
      const id = made.headers.get("location").split("/").pop();
      location.assign(`/lists/${id}`);
    } else {
      $("home-status").textContent = await problem(made);
    }
  });
}

function checklistPage() {
  const id = body.id;
  const link = new URLSearchParams(location.search).get("link");
  // Read-only through a link: the link's routes, no writes.
  const documentPath = link ? `/v1/state/links/${encodeURIComponent(link)}` : `/v1/state/${KIND}/${id}`;
  let checklist = null;
  let etag = null;
  let form = null;
  let show = "all";
  let writable = false;
  // Item id → the item as it was when its editor opened (the base of a
  // conflict check), for the editors open now.
  const editing = new Map();

  const say = (text) => {
    $("list-status").textContent = text;
  };

  // The item form: labels in the page's locale, and the checks.
  async function loadForm() {
    if (link) return;
    const response = await call("GET", `/v1/forms/${ITEM_FORM}`);
    if (response.ok) form = await response.json();
  }

  const label = (field) => form?.texts?.[field.label] ?? field.name;
  const fields = () => form?.definition?.fields ?? [{ name: "text", type: "text", label: "text" }];

  // An editor for `item` (empty for a new one): each field of the item
  // form, with its label and, after a check, its error.
  function editor(prefix, item, onSave, onCancel) {
    const box = document.createElement("form");
    box.noValidate = true;
    box.className = "editor";
    for (const field of fields()) {
      const wrap = document.createElement("div");
      const input = document.createElement(field.type === "long-text" ? "textarea" : "input");
      input.id = `${prefix}-${field.name}`;
      input.name = field.name;
      if (field.type === "boolean") {
        input.type = "checkbox";
        input.checked = item?.[field.name] === true;
      } else {
        if (input.tagName === "INPUT") input.type = field.type === "date" ? "date" : "text";
        input.value = item?.[field.name] ?? "";
      }
      const caption = document.createElement("label");
      caption.htmlFor = input.id;
      caption.textContent = label(field);
      const error = document.createElement("p");
      error.id = `${input.id}-error`;
      error.className = "error";
      wrap.append(caption, input, error);
      box.append(wrap);
    }
    const save = document.createElement("button");
    save.type = "submit";
    save.textContent = "Save";
    box.append(save);
    if (onCancel) {
      const cancel = document.createElement("button");
      cancel.type = "button";
      cancel.textContent = "Cancel";
      cancel.addEventListener("click", onCancel);
      box.append(" ", cancel);
    }
    box.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = {};
      for (const field of fields()) {
        const input = box.elements[field.name];
        if (field.type === "boolean") data[field.name] = input.checked;
        else if (input.value.trim() !== "") data[field.name] = input.value.trim();
      }
      for (const error of box.querySelectorAll(".error")) error.textContent = "";
      // The form kit's checks, worded in the page's locale, before the write.
      const checked = await call("POST", `/v1/forms/${ITEM_FORM}/validate`, { json: { data } });
      if (checked.status === 422) {
        const refusal = await checked.json();
        for (const problem of refusal.error.fields ?? []) {
          const name = problem.path.split("/").filter(Boolean)[0];
          const input = box.elements[name];
          if (input) {
            $(`${input.id}-error`).textContent = problem.message;
            input.setAttribute("aria-invalid", "true");
            input.setAttribute("aria-describedby", `${input.id}-error`);
          }
        }
        box.querySelector("[aria-invalid=true]")?.focus();
        return;
      }
      await onSave(data);
    });
    return box;
  }

  // A JSON Patch, made from the version this page holds.
  async function patch(ops) {
    return call("PATCH", `/v1/state/${KIND}/${id}`, {
      json: ops,
      headers: { "content-type": "application/json-patch+json", "if-match": etag },
    });
  }

  async function reload() {
    const response = await call("GET", documentPath);
    if (!response.ok) {
      say(`This checklist does not open: ${await problem(response)}`);
      return false;
    }
    etag = response.headers.get("etag");
    checklist = await response.json();
    render();
    return true;
  }

  // Saves `data` for item `itemId`, whose editor opened on `base`. On a
  // conflict the page reads the checklist again: if that item is as it
  // was, the save is made again on the new version; if someone changed
  // it, both versions are shown and the person chooses.
  async function saveItem(itemId, base, data) {
    for (let attempt = 0; attempt < 3; attempt += 1) {
      // The item must still be what the editor opened on: the version may
      // have moved on meanwhile (this page follows every change).
      const ops = base
        ? [
            { op: "test", path: `/items/${itemId}`, value: base },
            { op: "replace", path: `/items/${itemId}`, value: data },
          ]
        : [
            { op: "add", path: `/items/${itemId}`, value: data },
            { op: "add", path: "/order/-", value: itemId },
          ];
      const response = await patch(ops);
      if (response.ok) {
        etag = response.headers.get("etag");
        editing.delete(itemId);
        await reload();
        return true;
      }
      const refusal = await response.json().catch(() => null);
      const stale =
        response.status === 412 ||
        response.status === 409 ||
        (refusal?.error?.problems ?? []).some((p) => p.code === "test_failed");
      if (!stale) {
        say(refusal?.error?.message ?? `${response.status} ${response.statusText}`);
        return false;
      }
      await reload();
      const now = checklist.items[itemId];
      if (base && JSON.stringify(now) !== JSON.stringify(base)) {
        conflict(itemId, now, data);
        return false;
      }
    }
    say("The checklist is changing too fast; try again.");
    return false;
  }

  // Removes item `itemId` as it was when its editor opened; if someone
  // changed it since, it stays, and the person is told.
  async function removeItem(itemId, base) {
    for (let attempt = 0; attempt < 3; attempt += 1) {
      const index = checklist.order.indexOf(itemId);
      const ops = [
        { op: "test", path: `/items/${itemId}`, value: base },
        { op: "remove", path: `/items/${itemId}` },
        { op: "test", path: `/order/${index}`, value: itemId },
        { op: "remove", path: `/order/${index}` },
      ];
      const response = await patch(ops);
      if (response.ok || response.status === 412 || response.status === 409 || response.status === 422) {
        await reload();
      }
      if (response.ok || !checklist.items[itemId]) {
        editing.delete(itemId);
        render();
        return;
      }
      if (JSON.stringify(checklist.items[itemId]) !== JSON.stringify(base)) {
        editing.delete(itemId);
        render();
        say("Someone else changed this item meanwhile, so it was not removed.");
        return;
      }
    }
  }

  // Someone else's version beside this person's: keep theirs or save mine.
  function conflict(itemId, theirs, mine) {
    const entry = rowOf(itemId);
    if (!entry) return;
    const box = document.createElement("div");
    box.className = "conflict";
    box.setAttribute("role", "alert");
    const heading = document.createElement("p");
    heading.textContent = theirs
      ? "Someone else changed this item while you were editing it."
      : "Someone else removed this item while you were editing it.";
    const theirsText = document.createElement("p");
    theirsText.textContent = `Now: ${theirs ? theirs.text : "(removed)"}`;
    const mineText = document.createElement("p");
    mineText.textContent = `Yours: ${mine.text}`;
    const keep = document.createElement("button");
    keep.type = "button";
    keep.textContent = "Keep theirs";
    keep.addEventListener("click", () => {
      editing.delete(itemId);
      render();
    });
    const overwrite = document.createElement("button");
    overwrite.type = "button";
    overwrite.textContent = "Save mine";
    overwrite.addEventListener("click", async () => {
      editing.set(itemId, theirs);
      if (theirs) await saveItem(itemId, theirs, mine);
      else await saveItem(itemId, null, mine);
    });
    box.append(heading, theirsText, mineText, keep, " ", overwrite);
    entry.replaceChildren(box);
    keep.focus();
  }

  const rowOf = (itemId) => document.querySelector(`#items li[data-id="${CSS.escape(itemId)}"]`);

  function itemRow(itemId, item) {
    const entry = document.createElement("li");
    entry.dataset.id = itemId;
    entry.classList.toggle("done", item.done === true);
    if (editing.has(itemId) && writable) {
      const box = editor(`edit-${itemId}`, item, (data) => saveItem(itemId, editing.get(itemId), data), () => {
        editing.delete(itemId);
        render();
      });
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "Remove";
      remove.addEventListener("click", () => removeItem(itemId, editing.get(itemId)));
      box.append(" ", remove);
      entry.append(box);
      return entry;
    }
    const done = document.createElement("input");
    done.type = "checkbox";
    done.id = `done-${itemId}`;
    done.checked = item.done === true;
    done.disabled = !writable;
    done.addEventListener("change", async () => {
      editing.set(itemId, item);
      await saveItem(itemId, item, { ...item, done: done.checked });
    });
    const text = document.createElement("label");
    text.htmlFor = done.id;
    text.className = "text";
    text.textContent = item.text;
    entry.append(done, " ", text);
    if (item.due) {
      const due = document.createElement("time");
      due.dateTime = item.due;
      due.textContent = ` · due ${item.due}`;
      entry.append(due);
    }
    if (item.note) {
      const note = document.createElement("p");
      note.className = "note";
      note.textContent = item.note;
      entry.append(note);
    }
    if (writable) {
      const edit = document.createElement("button");
      edit.type = "button";
      edit.className = "edit";
      edit.textContent = "Edit";
      edit.setAttribute("aria-label", `Edit: ${item.text}`);
      edit.addEventListener("click", () => {
        editing.set(itemId, structuredClone(item));
        render();
        rowOf(itemId)?.querySelector("input, textarea")?.focus();
      });
      entry.append(" ", edit);
    }
    return entry;
  }

  function render() {
    if (!checklist) return;
    $("title").textContent = checklist.title;
    document.title = `${checklist.title} · Checklists`;
    $("show").value = show;
    const rows = [];
    for (const itemId of checklist.order ?? []) {
      // Only the checklist's own items (an id such as `constructor` names
      // nothing here).
      if (!Object.hasOwn(checklist.items ?? {}, itemId)) continue;
      const item = checklist.items[itemId];
      if (show === "open" && item.done) continue;
      if (show === "done" && !item.done) continue;
      // An open editor keeps what the person typed; a re-render replaces
      // only rows nobody is editing.
      const current = rowOf(itemId);
      rows.push(editing.has(itemId) && current?.querySelector("form, .conflict") ? current : itemRow(itemId, item));
    }
    $("items").replaceChildren(...rows);
    renderVideo();
  }

  function renderVideo() {
    const video = checklist.video;
    const box = $("video");
    if (!video) {
      box.replaceChildren();
      return;
    }
    if (box.querySelector("iframe")?.src === video.src) return;
    const frame = document.createElement("iframe");
    frame.src = video.src;
    frame.title = `Video (${video.provider})`;
    frame.setAttribute("sandbox", "allow-scripts allow-same-origin allow-presentation");
    frame.allow = video.allow ?? "";
    frame.referrerPolicy = "strict-origin-when-cross-origin";
    frame.loading = "lazy";
    frame.width = 560;
    frame.height = 315;
    box.replaceChildren(frame);
  }

  // Changes from anyone, live, from the version this page read (so none
  // made in between is missed): each event means "read it again".
  function follow() {
    const path = link ? `${documentPath}/changes` : `/v1/state/${KIND}/${id}/changes`;
    const since = encodeURIComponent((etag ?? "").replaceAll('"', ""));
    const stream = new EventSource(`${path}?since=${since}`);
    const changed = async () => {
      await reload();
      say("Updated just now.");
    };
    stream.addEventListener("message", changed);
    stream.addEventListener("change", changed);
    stream.addEventListener("reset", changed);
    stream.addEventListener("end", () => {
      stream.close();
      say("This checklist is no longer shared with you, or its link was revoked.");
    });
  }

  async function owner() {
    const grants = await call("GET", `/v1/state/${KIND}/${id}/grants`);
    if (!grants.ok) return;
    $("owner").hidden = false;
    const list = (await grants.json()).grants;
    const rows = Object.entries(list).map(([account, access]) => {
      const entry = document.createElement("li");
      entry.textContent = `${account}: ${access === "write" ? "may edit" : "may read"} `;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "Stop sharing";
      remove.addEventListener("click", async () => {
        await call("DELETE", `/v1/state/${KIND}/${id}/grants/${encodeURIComponent(account)}`);
        await owner();
      });
      entry.append(remove);
      return entry;
    });
    $("grants").replaceChildren(...rows);
  }

  const ownerSay = (text) => {
    $("owner-status").textContent = text;
  };

  $("grant-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const account = $("grant-code").value.trim();
    const response = await call("PUT", `/v1/state/${KIND}/${id}/grants/${encodeURIComponent(account)}`, {
      json: { access: $("grant-access").value },
    });
    ownerSay(response.ok ? "Shared." : await problem(response));
    if (response.ok) $("grant-code").value = "";
    await owner();
  });

  $("make-link").addEventListener("click", async () => {
    const response = await call("POST", `/v1/state/${KIND}/${id}/links`, { json: {} });
    if (!response.ok) {
      ownerSay(await problem(response));
      return;
    }
    const { token } = await response.json();
    $("read-link-box").hidden = false;
    $("read-link").value = new URL(`/lists/${id}?link=${encodeURIComponent(token)}`, location.href).href;
    $("read-link").select();
  });

  $("revoke-links").addEventListener("click", async () => {
    const response = await call("DELETE", `/v1/state/${KIND}/${id}/links`);
    ownerSay(response.ok ? "Every read-only link made so far is revoked." : await problem(response));
    $("read-link-box").hidden = true;
  });

  $("video-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const embed = await call("POST", "/v1/media/embeds", { json: { url: $("video-url").value.trim() } });
    if (!embed.ok) {
      ownerSay(await problem(embed));
      return;
    }
    const { provider, iframe } = await embed.json();
    const video = { provider, src: iframe.src, allow: iframe.allow };
    const response = await patch([{ op: "add", path: "/video", value: video }]);
    ownerSay(response.ok ? "The video is embedded." : await problem(response));
    await reload();
  });

  // The view (which items show) in a signed token, for a link that opens
  // the same view.
  $("show").addEventListener("change", () => {
    show = $("show").value;
    render();
  });
  $("share-view").addEventListener("click", async () => {
    const response = await call("POST", "/v1/state/views", { json: { kind: KIND, view: { list: id, show } } });
    if (!response.ok) {
      say(await problem(response));
      return;
    }
    const { token } = await response.json();
    const url = new URL(location.href);
    url.searchParams.set("view", token);
    history.replaceState(null, "", url);
    $("view-link-box").hidden = false;
    $("view-link").value = url.href;
    $("view-link").select();
  });

  async function openView() {
    const token = new URLSearchParams(location.search).get("view");
    if (!token || link) return;
    const response = await call("GET", `/v1/state/views/${encodeURIComponent(token)}`);
    if (!response.ok) return;
    const { view } = await response.json();
    if (view.list === id && ["all", "open", "done"].includes(view.show)) show = view.show;
  }

  function addForm() {
    const box = editor("new", null, async (data) => {
      const itemId = newId();
      if (await saveItem(itemId, null, data)) {
        box.reset();
        box.querySelector("input")?.focus();
      }
    });
    $("add-form").replaceWith(box);
    box.id = "add-form";
    $("add").hidden = false;
  }

  (async () => {
    await Promise.all([loadForm(), openView()]);
    if (!(await reload())) return;
    // Whether this person may write: the owner, or a grant to edit. A
    // read-only reader's write is refused by the state plugin anyway.
    writable = !link && body.me !== undefined;
    $("mode").textContent = link ? "Read-only link" : "";
    if (link) $("share-view").hidden = true;
    if (writable) {
      addForm();
      await owner();
      render();
    }
    follow();
  })();
}

if (body.page === "sign-in") signInPage();
if (body.page === "home") homePage();
if (body.page === "checklist") checklistPage();
