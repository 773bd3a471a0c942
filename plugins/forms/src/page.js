// The script of a form's page (`GET /forms/page.js`), served from this
// origin so that the page's CSP needs no inline script. It does the two
// things a plain HTML post cannot: it uploads a file field's files with
// tus 1.0 (resuming after a dropped connection) and names each finished
// upload in a hidden input of the field, and it answers the form's proof
// of work. Every other field works without it.
"use strict";

(() => {
  const form = document.querySelector("form[data-form-page]");
  if (!form) return;
  const token = form.querySelector("input[name=_token]").value;
  const csrf = form.querySelector("input[name=_csrf]")?.value;
  const status = form.querySelector("[data-form-status]");
  const pending = new Set();
  const CHUNK = 4 * 1024 * 1024;
  const MAX_RETRIES = 5;

  const fill = (template, values) => template.replace(/\{(\w+)\}/g, (whole, key) => (key in values ? String(values[key]) : whole));
  const base64 = (text) => btoa(Array.from(new TextEncoder().encode(text), (b) => String.fromCharCode(b)).join(""));
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const say = (text) => {
    status.textContent = text;
  };

  const tusHeaders = (more) => {
    const headers = { "tus-resumable": "1.0.0", ...more };
    if (csrf) headers["x-csrf-token"] = csrf;
    return headers;
  };

  class Refusal extends Error {}

  // The server's own words for a refusal, or the status.
  const reason = async (response) => {
    try {
      const body = await response.json();
      return new Refusal(body.error.message);
    } catch {
      return new Refusal(`${response.status} ${response.statusText}`);
    }
  };

  const track = (job) => {
    pending.add(job);
    job.catch(() => {}).finally(() => pending.delete(job));
    return job;
  };

  function removeButton(box, item, location) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = box.dataset.msgRemove;
    button.setAttribute("aria-label", `${box.dataset.msgRemove}: ${item.dataset.name}`);
    button.addEventListener("click", () => {
      if (location) fetch(location, { method: "DELETE", headers: tusHeaders({}) }).catch(() => {});
      item.remove();
      box.querySelector("input[type=file]").focus();
    });
    item.append(" ", button);
  }

  // Sends the file from where the server is, until it has every byte.
  async function send(location, file, progress) {
    let offset = 0;
    let failures = 0;
    for (;;) {
      progress(offset);
      let response = null;
      try {
        response = await fetch(location, {
          method: "PATCH",
          headers: tusHeaders({ "upload-offset": String(offset), "content-type": "application/offset+octet-stream" }),
          body: file.slice(offset, offset + CHUNK),
        });
      } catch {
        // A dropped connection: asked again below.
      }
      if (response && response.status === 204) {
        offset = Number(response.headers.get("upload-offset"));
        failures = 0;
        if (offset >= file.size) return;
        continue;
      }
      if (response && response.status < 500 && response.status !== 409 && response.status !== 429) {
        throw await reason(response);
      }
      failures += 1;
      if (failures > MAX_RETRIES) throw response ? await reason(response) : new Refusal("the connection failed");
      await sleep(500 * 2 ** failures);
      try {
        const head = await fetch(location, { method: "HEAD", headers: tusHeaders({}) });
        if (!head.ok) throw await reason(head);
        offset = Number(head.headers.get("upload-offset"));
      } catch (e) {
        if (e instanceof Refusal) throw e;
      }
    }
  }

  function upload(box, file) {
    const list = box.querySelector("ul");
    const item = document.createElement("li");
    item.dataset.name = file.name;
    const text = document.createElement("span");
    item.append(text);
    if (file.type.startsWith("image/")) {
      const preview = document.createElement("img");
      preview.alt = "";
      preview.height = 64;
      preview.src = URL.createObjectURL(file);
      preview.addEventListener("load", () => URL.revokeObjectURL(preview.src), { once: true });
      item.prepend(preview, " ");
    }
    const progress = (offset) => {
      const percent = file.size ? Math.floor((offset * 100) / file.size) : 0;
      text.textContent = fill(box.dataset.msgUploading, { name: file.name, percent });
    };
    progress(0);
    list.append(item);
    track(
      (async () => {
        let location = null;
        try {
          const metadata = `token ${base64(token)},field ${base64(box.dataset.fileField)},filename ${base64(file.name)}`;
          const created = await fetch(form.dataset.uploads, {
            method: "POST",
            headers: tusHeaders({ "upload-length": String(file.size), "upload-metadata": metadata }),
          });
          if (created.status !== 201) throw await reason(created);
          location = new URL(created.headers.get("location"), document.baseURI).href;
          await send(location, file, progress);
          const id = new URL(location).pathname.split("/").pop();
          const kept = document.createElement("input");
          kept.type = "hidden";
          kept.name = box.dataset.fileField;
          kept.value = id;
          item.append(kept);
          text.textContent = fill(box.dataset.msgAttached, { name: file.name });
          removeButton(box, item, location);
        } catch (e) {
          text.textContent = fill(box.dataset.msgFailed, { name: file.name, reason: e.message });
          item.dataset.failed = "";
          removeButton(box, item, location);
          throw e;
        }
      })(),
    );
  }

  for (const box of form.querySelectorAll("[data-file-field]")) {
    const input = box.querySelector("input[type=file]");
    const list = box.querySelector("ul");
    box.querySelector("[data-needs-script]").hidden = true;
    input.disabled = false;
    for (const item of list.querySelectorAll("li")) removeButton(box, item, null);
    input.addEventListener("change", () => {
      const max = Number(box.dataset.maxItems);
      for (const file of input.files) {
        if (list.querySelectorAll("li:not([data-failed])").length >= max) {
          say(box.dataset.msgTooMany);
          break;
        }
        upload(box, file);
      }
      input.value = "";
    });
  }

  // The proof of work: the number whose SHA-256 with the salt is the
  // challenge, found while the person fills the form in.
  const hex = (buffer) => Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
  async function solve(url) {
    const response = await fetch(url, { headers: { accept: "application/json" } });
    if (!response.ok) throw await reason(response);
    const challenge = await response.json();
    const encoder = new TextEncoder();
    for (let number = 0; number <= challenge.maxnumber; number += 1) {
      const digest = await crypto.subtle.digest("SHA-256", encoder.encode(challenge.salt + number));
      if (hex(digest) === challenge.challenge) {
        const { algorithm, salt, signature } = challenge;
        const answer = { algorithm, challenge: challenge.challenge, number, salt, signature };
        form.querySelector("input[name=altcha]").value = btoa(JSON.stringify(answer));
        return;
      }
    }
    throw new Refusal("the challenge has no answer");
  }
  if (form.dataset.challenge) track(solve(form.dataset.challenge));

  // Sent once every upload and the proof are done (or failed: the server
  // then says what is missing, by its field).
  form.addEventListener("submit", async (event) => {
    if (pending.size === 0) return;
    event.preventDefault();
    say(form.dataset.checking);
    while (pending.size > 0) await Promise.allSettled([...pending]);
    form.submit();
  });
})();
