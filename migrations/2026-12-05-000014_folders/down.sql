DROP TABLE folder_items;
DROP TABLE folders;
