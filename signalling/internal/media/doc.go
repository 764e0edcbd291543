// Package media is the content repository (Client-Server API, "Content
// repository"): uploads, including the asynchronous create-then-upload
// flow, downloads, thumbnails and the repository's configuration, on both
// the authenticated /_matrix/client/v1/media endpoints and the deprecated
// /_matrix/media/v3 ones.
//
// Bytes are stored on disk under Config.Dir, content-addressed by SHA-256,
// so identical uploads share one file:
//
//	<Dir>/content/ab/cd/abcd...    the uploaded bytes
//	<Dir>/thumbnails/ab/cd/abcd...-<w>x<h>-<method>
//	<Dir>/tmp/                     uploads and thumbnails being written
//
// Every file is written to tmp, synced and then renamed into place, so a
// reader never sees half a file; the database row (table media) that makes
// an upload visible is inserted only after its file is durable. A crash
// can leave an unreferenced file behind, never a row without its file.
//
// Thumbnails are generated on demand from PNG, JPEG, GIF and WebP images
// and cached on disk. Requested sizes are rounded up to a short ladder of
// sizes, so a client cannot fill the disk by asking for every size; images
// over Config.MaxImagePixels are refused from their header alone, before
// any pixel is decoded (decompression bombs).
//
// Media of other servers is fetched through a [Remote] (federation, see
// Deps.Remote) on first request and cached like an upload, so later
// downloads and thumbnails of it need no other server; without a Remote it
// answers 404.
package media
