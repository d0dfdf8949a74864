// The API tokens page: "Copy token" puts the new token on the clipboard (or, where the
// Clipboard API is not available, selects it so that Ctrl-C copies it).
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const field = document.getElementById(button.dataset.copy);
  const status = document.getElementById(button.dataset.status);
  let copied = false;
  try {
    await navigator.clipboard.writeText(field.value);
    copied = true;
  } catch (error) {
    field.focus();
    field.select();
    copied = document.execCommand && document.execCommand("copy");
  }
  if (status) status.textContent = copied ? "Copied." : "Selected: press Ctrl-C to copy.";
});
