// Appended (inside a <script> element) to a copy of a Snakemake report by tests/test_workflow.py.
// In a real headless browser it walks the report as a reader would: every result category in
// the menu, every result in it opened with its "eye" button, and records what was displayed.
// The record ends up as JSON in a hidden pre element, id mr2ct-report-check (read with
// chromium --dump-dom);
// the view is left on the qualitative figure for a screenshot.
window.addEventListener("load", async () => {
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const record = { categories: [], results: [], errors: [], title: document.title };
  window.addEventListener("error", (event) => record.errors.push(String(event.message)));
  const menu = () => Array.from(document.querySelectorAll("nav li"));
  const goHome = async () => {
    document.querySelector("nav ol li a").click();
    await sleep(300);
  };
  const openCategory = async (name) => {
    await goHome();
    const item = menu().find((li) => li.textContent.trim() === name);
    item.querySelector("a").click();
    await sleep(300);
  };
  const rows = () => Array.from(document.querySelectorAll("tr")).filter((tr) => tr.querySelector("a[iconname=eye]"));
  try {
    await sleep(1000);
    const start = menu().findIndex((li) => li.textContent.trim() === "Results");
    record.categories = menu().slice(start + 1).map((li) => li.textContent.trim()).filter(Boolean);
    record.workflowText = document.body.innerText.slice(0, 4000);
    let last = null;
    for (const category of record.categories) {
      await openCategory(category);
      const count = rows().length;
      for (let i = 0; i < count; i++) {
        await openCategory(category);
        const row = rows()[i];
        const file = row.querySelector("td").textContent.trim();
        row.querySelector("a[iconname=eye]").click();
        await sleep(800);
        const base = file.split("/").pop();
        const image = Array.from(document.querySelectorAll("img")).find((img) => img.src.includes("filename=" + base));
        record.results.push({
          category,
          file,
          image: Boolean(image),
          complete: image ? image.complete : null,
          width: image ? image.naturalWidth : 0,
          height: image ? image.naturalHeight : 0,
          cells: document.querySelectorAll("td").length,
          text: document.body.innerText.length,
        });
        if (base.startsWith("qualitative")) last = [category, i];
      }
    }
    if (last) {
      await openCategory(last[0]);
      rows()[last[1]].querySelector("a[iconname=eye]").click();
      await sleep(800);
    }
  } catch (error) {
    record.errors.push("check script: " + error);
  }
  const pre = document.createElement("pre");
  pre.id = "mr2ct-report-check";
  pre.style.display = "none";
  pre.textContent = JSON.stringify(record);
  document.body.appendChild(pre);
});
