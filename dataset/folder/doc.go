// Package folder reads an image-folder tree as a dataset.Source, the layout
// torchvision's ImageFolder reads, and registers the scheme "folder:DIR"
// with dataset.Open:
//
//	DIR/<class>/<image>.{png,jpg,jpeg,gif}
//
// Classes are the sub-folders of DIR in sorted order, so the label of a
// class is its position in that order; a class's name is its folder name
// with "_" read as a space ("golden_retriever" is "golden retriever").
// Images are found in each class folder and its sub-folders, sorted by
// path; files with other extensions are ignored. A class folder may be a
// symbolic link; links inside class folders are not followed. The tree is listed once,
// when the source is opened.
//
// A sample carries its image, its label and a caption of its class from
// the templates (OpenOptions.Templates, a file read by
// dataset.ReadTemplates, or the built-in generic ones): the template
// chosen by Captioner.Pick(seed, 0, i). Captioner gives the captioner, so
// that a caller can draw another template each epoch.
package folder
