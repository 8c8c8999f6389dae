// Saving results as files: Blob downloads through object URLs.

// Object URL of each link that points at a Blob, revoked when the link is
// pointed elsewhere or cleared.
const linkUrls = new WeakMap();

// Points `link` at `blob`, saved as `name`, and shows it with `text`.
export function setLinkBlob(link, blob, name, text) {
  clearLink(link);
  const url = URL.createObjectURL(blob);
  linkUrls.set(link, url);
  link.href = url;
  link.download = name;
  link.textContent = text;
  link.hidden = false;
}

export function clearLink(link) {
  const url = linkUrls.get(link);
  if (url) {
    URL.revokeObjectURL(url);
    linkUrls.delete(link);
  }
  link.removeAttribute('href');
  link.hidden = true;
}

// Starts the download of `blob` as `name`, as if the user had clicked a link.
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  // Revoking the URL at once can cancel the download in some browsers, so it
  // stays valid for a minute.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
