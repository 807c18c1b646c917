// Switchyard console: small enhancements; every page works without them.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Copy a freshly shown key.
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const field = document.getElementById(button.dataset.copy);
      const status = button.parentElement.querySelector(".copied");
      if (!field) return;
      try {
        await navigator.clipboard.writeText(field.value);
        if (status) status.textContent = "Copied.";
      } catch {
        // No clipboard access (an insecure origin): select it for the user to copy.
        field.focus();
        field.select();
        if (status) status.textContent = "Selected: press Ctrl+C (⌘C) to copy.";
      }
    });
  }
  // Ask before a destructive action.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
});

// Sub-accounts and keys (Manage): after a refused form, its first refused field
// takes the focus, so the refusal beside it is in view and read out.
document.addEventListener("DOMContentLoaded", () => {
  const refused = document.querySelector("[aria-invalid='true']");
  if (refused) refused.focus();
});
